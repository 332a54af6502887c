"""Publish a package to the Hugging Face Hub, and verify a published one.

``push``: refuse a package whose gate did not pass, whose files do not match its manifest, or
whose Hub source is not pinned to a commit (unless the recipe allows it); then ``create_repo``,
**one** ``create_commit`` holding every file (with ``parent_commit``, so a concurrent change is
detected, and deletions of files the package no longer has), then ``create_tag``. An unchanged
package (same manifest, timing aside) makes no commit. ``--dry-run`` prints the operations and
writes nothing. ``verify``: resolve the revision on the Hub (or, with ``offline``, take the cached
copy and say so), download it, treat it as hostile (``pipeline.manifest_schema``: schemas, every
path inside the download, registered stages), check every file against the manifest, and only
then run the shipped golden inputs through each artifact against the shipped golden outputs.
Every Hub request has a bounded timeout (``pipeline.hub_http``).

The token comes from huggingface_hub (``HF_TOKEN`` or its login) and is passed to it alone:
never printed, logged, or written into any file or message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline import cpu, package, parity, untrusted
from pipeline import manifest_schema as schema
from pipeline.errors import InputError, PipelineError, PublishError
from pipeline.filehash import sha256_file
from pipeline.hub_http import bound_timeouts, resolve_revision
from pipeline.layout import BUILD_RECORD, PACKAGE, BuildDir
from pipeline.paths import UnsafePath, inside, regular_files
from pipeline.recipe import from_data
from pipeline.stages import Artifact, get_stage

Events = Callable[[str, str], None]
KEEP_REMOTE = {".gitattributes"}  # the Hub's own file: never deleted by a push


@dataclass
class PushResult:
    repo_id: str
    revision: str
    commit: str | None  # the new commit, or the current head when nothing changed
    tag: str | None
    changed: bool
    dry_run: bool
    operations: list[str] = field(default_factory=list)
    pr_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _manifest(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / package.MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{folder}: no {package.MANIFEST}: not a package (run `convert build` first)") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{folder / package.MANIFEST}: unreadable: {e}") from None


def check_package(build_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The package folder and its manifest, after checking it may be published.

    Raises:
        InputError: no package there.
        PublishError: the last build failed its gate, a packaged artifact did not pass, the files
            do not match the manifest, or the Hub source is floating without permission.
    """
    pkg = BuildDir(build_dir).package if BuildDir(build_dir).package.is_dir() else build_dir
    manifest = _manifest(pkg)
    repo = (manifest.get("recipe", {}).get("publish") or {}).get("repo") or "?"
    build_json = pkg.parent / BUILD_RECORD
    if build_json.is_file() and pkg.name == PACKAGE:
        last = json.loads(build_json.read_text(encoding="utf-8"))
        if not last.get("passed", False):
            raise PublishError(f"{build_dir}: the last build failed its parity gate ({len(last.get('failures', []))} "
                               "failures): nothing is pushed until a build passes", repo_id=repo)
    report = json.loads((pkg / package.PARITY).read_text(encoding="utf-8")) if (pkg / package.PARITY).is_file() else {}
    for name in manifest.get("artifacts", {}):
        if not report.get("artifacts", {}).get(name, {}).get("passed", False):
            raise PublishError(f"{pkg}: artifact {name!r} has no passing parity report", repo_id=repo)
    listed = package.all_files(manifest)
    on_disk = package.file_table(pkg)
    problems = [f"{p}: changed since packaging" for p in sorted(listed) if p in on_disk and on_disk[p] != listed[p]]
    problems += [f"{p}: missing" for p in sorted(set(listed) - set(on_disk))]
    problems += [f"{p}: not in the manifest" for p in sorted(set(on_disk) - set(listed))]
    if problems:
        raise PublishError(f"{pkg}: files do not match the manifest: {'; '.join(problems[:5])}", repo_id=repo)
    source = manifest.get("source", {})
    allowed = manifest.get("recipe", {}).get("source", {}).get("allow_floating_revision", False)
    if source.get("kind") == "hub" and not _is_sha(manifest.get("recipe", {}).get("source", {}).get("revision")) \
            and not allowed:
        raise PublishError(f"{pkg}: the source revision {manifest['recipe']['source'].get('revision')!r} is a branch "
                           f"or tag (resolved to {source.get('revision')}); pin the commit sha in the recipe, or set "
                           "source.allow_floating_revision: true", repo_id=repo)
    return pkg, manifest


def _quiet_client() -> None:
    """huggingface_hub draws a tqdm bar per file on stderr; our own events report progress, and
    ``--json`` output must stay clean."""
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()


def _status(e: Any) -> str:
    return str(e.response.status_code) if getattr(e, "response", None) is not None else "no answer"


def _is_sha(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value)


def _comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest without its timing section and library versions: what a re-push compares."""
    return {k: v for k, v in manifest.items() if k not in ("timing", "versions")}


RETRIES = 4  # attempts of one Hub request that failed transiently
BACKOFF_S = 0.5  # first wait; doubled after each failed attempt
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


def _transient(e: BaseException) -> bool:
    """A failure worth another attempt: the server was overloaded or the connection broke."""
    import requests
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(e, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
        return True
    return isinstance(e, HfHubHTTPError) and e.response is not None and e.response.status_code in TRANSIENT_STATUS


def _retrying(call: Callable[[], Any], what: str, emit: Events) -> Any:
    """Run ``call``, again after a transient failure (with exponential backoff), at most RETRIES times.

    Only for requests that are safe to repeat: reads, ``create_repo(exist_ok=True)``, content-addressed
    uploads and a commit guarded by its parent (a commit that landed before its answer was lost is
    refused as stale on the next attempt, and the caller then finds it on the Hub).
    """
    import time

    for attempt in range(1, RETRIES + 1):
        try:
            return call()
        except Exception as e:
            if attempt == RETRIES or not _transient(e):
                raise
            wait = BACKOFF_S * 2 ** (attempt - 1)
            emit("push", f"{what}: {_describe(e)}; retrying in {wait:.1f} s ({attempt}/{RETRIES - 1})")
            time.sleep(wait)
    raise AssertionError("unreachable")


def _describe(e: BaseException) -> str:
    status = getattr(getattr(e, "response", None), "status_code", None)
    return f"HTTP {status}" if status else f"connection failed ({type(e).__name__})"


def push(build_dir: Path, *, revision: str = "main", create_pr: bool = False, dry_run: bool = False,
         on_event: Events | None = None) -> PushResult:
    """Publish the package of ``build_dir`` to the recipe's ``publish.repo`` in one commit.

    Raises:
        InputError: no package, or no ``publish`` section in its recipe.
        PublishError: see :func:`check_package`; no token; the branch moved during the push (stale
            parent); the tag exists on another commit; or the Hub refused a request.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError


    emit = on_event or (lambda step, message: None)
    _quiet_client()
    bound_timeouts()
    pkg, manifest = check_package(build_dir)
    publish = manifest.get("recipe", {}).get("publish")
    if not publish:
        raise InputError(f"{pkg}: the recipe has no publish section (publish: {{repo: org/name, tag: v1}})")
    repo_id, tag, private = publish["repo"], publish.get("tag"), publish.get("private", True)
    token = get_token()
    if token is None and not dry_run:
        raise PublishError("no Hub token: set HF_TOKEN or run `huggingface-cli login`", repo_id=repo_id)
    api = HfApi(token=token)
    result = PushResult(repo_id=repo_id, revision=revision, commit=None, tag=tag, changed=False, dry_run=dry_run)

    emit("push", f"reading {repo_id}@{revision}")
    remote_files: set[str] = set()
    head: str | None = None
    remote_manifest: dict[str, Any] | None = None
    exists = True
    try:
        head, remote_files, remote_manifest = _remote_state(api, repo_id, revision, emit)
    except RepositoryNotFoundError:
        exists = False
    except RevisionNotFoundError:
        if not create_pr and revision != "main":
            raise PublishError(f"{repo_id} has no branch {revision!r} (create it first, or push to main)",
                               repo_id=repo_id) from None
    except HfHubHTTPError as e:
        raise _hub_error(repo_id, e, "reading the repo") from None
    except (OSError, ValueError) as e:  # requests' connection errors are OSErrors too
        raise PublishError(f"{repo_id}: could not read the repo: {_describe(e)}", repo_id=repo_id) from None

    if not exists:
        result.operations.append(f"create repo {repo_id} ({'private' if private else 'public'})")
    if remote_manifest is not None and _comparable(remote_manifest) == _comparable(manifest):
        result.commit = head
        emit("push", f"{repo_id}@{revision} already holds this package: no commit")
    else:
        files = package.all_files(manifest)
        ops: list[Any] = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(pkg / rel))
                          for rel in sorted([*files, package.MANIFEST])]
        ops += [CommitOperationDelete(path_in_repo=rel)
                for rel in sorted(remote_files - set(files) - {package.MANIFEST} - KEEP_REMOTE)]
        for op in ops:
            if isinstance(op, CommitOperationAdd):
                size = (pkg / op.path_in_repo).stat().st_size
                result.operations.append(f"add {op.path_in_repo} ({size / 1e6:.2f} MB)")
            else:
                result.operations.append(f"delete {op.path_in_repo}")
        result.operations.insert(len(result.operations) - len(ops),
                                 f"commit to {repo_id}@{revision}" + (" as a pull request" if create_pr else "")
                                 + f" on parent {head[:12] if head else '(new repo)'}: {len(ops)} operations")
        if not dry_run:
            _commit(api, result, manifest, ops, head=head, exists=exists, private=private, create_pr=create_pr,
                    emit=emit)
    if tag and not create_pr:
        _tag(api, result, dry_run, emit)
    elif tag:
        result.operations.append(f"tag {tag}: not set on a pull request (merge it, then push again)")
    return result


def _quietly(read: Callable[[], Any]) -> Any:
    """A read made only to explain a failure: its own failure (None) leaves the first one to be reported."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return read()
    except (HfHubHTTPError, OSError, ValueError):
        return None


def _hub_error(repo_id: str, e: Any, doing: str) -> PublishError:
    detail = (getattr(e, "server_message", None) or "").strip().splitlines()
    return PublishError(f"{repo_id}: {doing} failed ({_status(e)}" + (f": {detail[0]}" if detail else "") + ")",
                        repo_id=repo_id, request_id=getattr(e, "request_id", None))


def _remote_state(api: Any, repo_id: str, revision: str,
                  emit: Events) -> tuple[str | None, set[str], dict[str, Any] | None]:
    """The head commit of ``revision``, its files, and its manifest (None where it has none)."""
    info = _retrying(lambda: api.model_info(repo_id, revision=revision, files_metadata=False),
                     f"reading {repo_id}", emit)
    files = {s.rfilename for s in info.siblings or []}
    manifest = None
    if package.MANIFEST in files:
        path = _retrying(lambda: api.hf_hub_download(repo_id, package.MANIFEST, revision=info.sha),
                         f"downloading {package.MANIFEST}", emit)
        try:  # the remote copy is not trusted: bounded, duplicate keys refused
            loaded = untrusted.read_json(Path(path), schema.JSON_LIMITS)
        except untrusted.Refused:
            loaded = None
        manifest = loaded if isinstance(loaded, dict) else None  # not ours (a list, a number): never equal
    return info.sha, files, manifest


def _commit(api: Any, result: PushResult, manifest: dict[str, Any], ops: list[Any], *, head: str | None,
            exists: bool, private: bool, create_pr: bool, emit: Events) -> None:
    """Create the repo if needed, then make the one commit; transient failures are retried.

    A failure leaves the repo as it was: the Hub applies a commit whole or not at all. When an
    attempt's answer was lost after the commit landed, the retry is refused as stale (its parent
    moved); the head then holds our manifest, which is taken as success.
    """
    from huggingface_hub.errors import HfHubHTTPError

    repo_id, revision = result.repo_id, result.revision
    attempts = 0
    try:
        if not exists:
            emit("push", f"creating {repo_id}")
            _retrying(lambda: api.create_repo(repo_id, private=private, exist_ok=True), "creating the repo", emit)
            head = _retrying(lambda: api.model_info(repo_id, revision=revision).sha, f"reading {repo_id}", emit)
        emit("push", f"committing {len(ops)} files in one commit")

        def commit() -> Any:
            nonlocal attempts
            attempts += 1
            return api.create_commit(
                repo_id, operations=ops, revision=revision, parent_commit=head, create_pr=create_pr,
                commit_message=f"convert: {manifest['name']} (recipe {manifest['recipe_sha256'][:12]})",
                commit_description=f"Source {manifest['source']['id']}@{manifest['source'].get('revision')}; "
                                   f"artifacts: {', '.join(manifest['artifacts'])}.")

        info = _retrying(commit, "the commit", emit)
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status == 412 and attempts > 1 and not create_pr:
            landed, _, remote = _quietly(lambda: _remote_state(api, repo_id, revision, emit)) or (None, None, None)
            if remote is not None and _comparable(remote) == _comparable(manifest):
                emit("push", f"the commit had landed before its answer was lost: {str(landed)[:12]}")
                result.commit, result.changed = landed, True
                return
        if status == 412:
            raise PublishError(f"{repo_id}@{revision} changed while pushing (its head is no longer "
                               f"{(head or '')[:12]}): nothing was written; push again",
                               repo_id=repo_id, request_id=e.request_id) from None
        raise _hub_error(repo_id, e, "the commit") from None
    except OSError as e:  # the connection kept failing (requests' errors are OSErrors)
        raise PublishError(f"{repo_id}: the commit failed: {_describe(e)} after {RETRIES} attempts; nothing was "
                           "written (a commit lands whole or not at all): push again", repo_id=repo_id) from None
    result.commit, result.changed, result.pr_url = info.oid, True, info.pr_url


def _tag(api: Any, result: PushResult, dry_run: bool, emit: Events) -> None:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    tag = result.tag
    assert tag is not None
    def tags() -> dict[str, str]:
        refs = _retrying(lambda: api.list_repo_refs(result.repo_id), "reading tags", emit)
        return {t.name: t.target_commit for t in refs.tags}

    try:
        existing = tags()
    except RepositoryNotFoundError:
        existing = {}
    except (HfHubHTTPError, OSError) as e:
        raise PublishError(f"{result.repo_id}: reading tags failed ({_describe(e)})", repo_id=result.repo_id) from None
    target = result.commit
    if tag in existing:
        if target is not None and existing[tag] == target:
            result.operations.append(f"tag {tag}: already on {target[:12]}")
            return
        if target is None:  # dry run against a repo that would change: the tag would move
            raise PublishError(f"{result.repo_id}: tag {tag!r} already exists on {existing[tag][:12]}; a new commit "
                               "needs a new tag: bump publish.tag in the recipe", repo_id=result.repo_id)
        raise PublishError(f"{result.repo_id}: tag {tag!r} already points to {existing[tag][:12]}, not to the "
                           f"new commit {target[:12]}: bump publish.tag in the recipe (the commit is kept)",
                           repo_id=result.repo_id)
    result.operations.append(f"tag {tag} -> {target[:12] if target else 'the new commit'}")
    if not dry_run:
        emit("push", f"tagging {tag}")
        try:
            _retrying(lambda: api.create_tag(result.repo_id, tag=tag, revision=target, tag_message=f"convert {tag}"),
                      f"tagging {tag}", emit)
        except (HfHubHTTPError, OSError) as e:
            # an earlier attempt made the tag and its answer was lost
            if _status(e) == "409" and (_quietly(tags) or {}).get(tag) == target:
                return
            raise PublishError(f"{result.repo_id}: tagging {tag} failed ({_describe(e)}); the commit "
                               f"{(target or '')[:12]} is published: push again to tag it", repo_id=result.repo_id,
                               request_id=getattr(e, "request_id", None)) from None


@dataclass
class VerifyResult:
    repo_id: str
    revision: str
    commit: str | None
    files_checked: int
    artifacts_checked: list[str]
    problems: list[str]
    cpu: dict[str, Any] = field(default_factory=dict)  # the verifying machine's: artifacts were re-gated there
    offline: bool = False  # the cached copy of ``commit`` was verified; the Hub was not asked where revision points

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def verify(repo_id: str, revision: str = "main", *, manifest_sha256: str | None = None, offline: bool = False,
           on_event: Events | None = None) -> VerifyResult:
    """Resolve ``repo_id@revision`` on the Hub, download that commit and check it: the manifest and
    parity.json against their schemas and every path in them inside the download, file hashes
    against the manifest, the manifest against itself (and ``manifest_sha256`` if given), and each
    artifact's outputs on the shipped golden inputs against the shipped golden outputs, under the
    artifact's own gate. Nothing runs before every file it reads is checked.

    ``offline``: verify the copy in the local cache without asking the Hub (the result says so).

    Raises:
        PublishError: no such repo or revision, the download failed, or (offline) nothing cached.
        HubUnreachable: the Hub could not be reached to resolve the revision.
        Mismatches and hostile content are returned as problems, not raised.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    emit = on_event or (lambda step, message: None)
    _quiet_client()
    bound_timeouts()
    if offline:
        emit("verify", f"offline: taking the cached copy of {repo_id}@{revision}")
        try:
            folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            raise PublishError(f"{repo_id}@{revision}: no copy in the local cache to verify offline (verify it "
                               "online once first)", repo_id=repo_id) from None
    else:
        emit("verify", f"resolving {repo_id}@{revision} on the Hub")
        commit = resolve_revision(repo_id, revision)
        result = VerifyResult(repo_id, revision, commit, 0, [], [], cpu=cpu.current(), offline=offline)
        listing = _listing(repo_id, commit)
        emit("verify", f"downloading {package.MANIFEST} of {repo_id}@{commit[:12]}")
        if package.MANIFEST not in listing:
            result.problems.append(f"{package.MANIFEST}: missing")
            return result
        if listing[package.MANIFEST] > schema.MAX_JSON_BYTES:
            result.problems.append(f"repo's {package.MANIFEST} is {listing[package.MANIFEST]} bytes, over the limit "
                                   f"of {schema.MAX_JSON_BYTES} (not downloaded)")
            return result
        folder = _download(repo_id, revision, commit, [package.MANIFEST])
        try:
            wanted = _listed_files(folder, listing, result)
        except UnsafePath as e:
            result.problems.append(f"repo's manifest points outside the repo: {e}")
        except PipelineError as e:
            result.problems.append(str(e))
        if result.problems:
            return result  # nothing but the manifest was downloaded
        emit("verify", f"downloading the {len(wanted)} files the manifest lists")
        folder = _download(repo_id, revision, commit, wanted)
    result = VerifyResult(repo_id, revision, folder.name, 0, [], [], cpu=cpu.current(), offline=offline)

    try:
        _verify_download(folder, result, manifest_sha256, emit)
    except UnsafePath as e:
        result.problems.append(f"repo's manifest points outside the repo: {e}")
    except PipelineError as e:  # hostile or broken content: the repo fails verification, in one line
        result.problems.append(str(e))
    return result


def _listing(repo_id: str, commit: str) -> dict[str, int]:
    """Every file of the repo at ``commit`` and its size, as the Hub lists them (nothing downloaded).

    Raises:
        PublishError: the listing failed.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.hf_api import RepoFile

    try:
        tree = HfApi().list_repo_tree(repo_id, revision=commit, recursive=True)
        return {f.path: int(f.size) for f in tree if isinstance(f, RepoFile)}
    except HfHubHTTPError as e:
        raise PublishError(f"{repo_id}@{commit[:12]}: listing the files failed ({_status(e)})", repo_id=repo_id,
                           request_id=e.request_id) from None
    except (OSError, ValueError, TypeError) as e:
        raise PublishError(f"{repo_id}@{commit[:12]}: listing the files failed ({type(e).__name__})",
                           repo_id=repo_id) from None


def _download(repo_id: str, revision: str, commit: str, files: list[str]) -> Path:
    """Download ``files`` (exact names) of ``repo_id`` into the cache snapshot of ``commit``.

    By the revision's name, so the cache records where it points (for ``--offline``); the snapshot
    must be ``commit``.

    Raises:
        PublishError: the download failed, was refused, or is another commit than ``commit``.
    """
    import glob

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[glob.escape(f) for f in files]))
    except HfHubHTTPError as e:
        raise PublishError(f"{repo_id}@{revision}: download failed ({_status(e)})", repo_id=repo_id,
                           request_id=e.request_id) from None
    except ValueError as e:  # huggingface_hub refuses a file name that would land outside the snapshot
        first = (str(e).strip().splitlines() or [""])[0][:240]
        raise PublishError(f"{repo_id}@{revision}: download refused, the repo is not safe to download: {first}",
                           repo_id=repo_id) from None
    except OSError as e:
        raise PublishError(f"{repo_id}@{revision}: download failed ({type(e).__name__})", repo_id=repo_id) from None
    if folder.name != commit:  # moved meanwhile, or the download fell back to an older cached copy
        raise PublishError(f"{repo_id}@{revision}: the download is commit {folder.name[:12]}, not the "
                           f"{commit[:12]} the Hub named a moment before; nothing was verified: run verify again",
                           repo_id=repo_id)
    return folder


def _listed_files(folder: Path, listing: dict[str, int], result: VerifyResult) -> list[str]:
    """The files to download: those the (downloaded, validated) manifest lists, after checking the
    Hub's listing against it. A listed file the Hub does not have, or has at another size, and a
    file the manifest does not list are problems; no such file is downloaded."""
    blobs = folder.parent.parent / "blobs"
    manifest = schema.manifest(schema.read_json(folder, package.MANIFEST, links_within=blobs, what="manifest"))
    listed = manifest.all_files()
    for rel, entry in sorted(listed.items()):
        if rel not in listing:
            result.problems.append(f"{rel}: missing")
        elif listing[rel] != entry.size:
            result.problems.append(f"{rel}: {listing[rel]} bytes, the manifest says {entry.size} (tampered or "
                                   "corrupted); not downloaded")
    for rel in sorted(set(listing) - set(listed) - {package.MANIFEST} - KEEP_REMOTE):
        result.problems.append(f"{rel}: not in the manifest (not downloaded)")
    return sorted([*listed, package.MANIFEST])


def _verify_download(folder: Path, result: VerifyResult, manifest_sha256: str | None, emit: Events) -> None:

    problems = result.problems
    blobs = folder.parent.parent / "blobs"  # a cache snapshot's files are links into its repo's blobs/
    try:
        present = set(regular_files(folder, links_within=blobs))
    except UnsafePath as e:
        raise schema.RepoProblem(f"repo's download holds {e.path!r}, which {e.reason}") from None
    if package.MANIFEST not in present:
        problems.append(f"{package.MANIFEST}: missing")
        return
    manifest_path = inside(folder, package.MANIFEST, kind="file", links_within=blobs)
    if manifest_sha256 and sha256_file(manifest_path) != manifest_sha256:
        problems.append(f"{package.MANIFEST}: sha256 {sha256_file(manifest_path)[:16]}… is not the expected "
                        f"{manifest_sha256[:16]}…")
    manifest = schema.manifest(schema.read_json(folder, package.MANIFEST, links_within=blobs, what="manifest"))
    try:
        if from_data(manifest.recipe).digest() != manifest.recipe_sha256:
            problems.append(f"{package.MANIFEST}: recipe_sha256 does not match its recipe (edited manifest)")
    except PipelineError as e:
        problems.append(f"{package.MANIFEST}: its recipe is not valid ({e})")
    listed = manifest.all_files()
    for rel, entry in sorted(listed.items()):
        if rel not in present:
            problems.append(f"{rel}: missing")
        elif (path := inside(folder, rel, kind="file", links_within=blobs)).stat().st_size != entry.size:
            problems.append(f"{rel}: {path.stat().st_size} bytes, the manifest says {entry.size} (tampered or "
                            "corrupted)")  # checked before hashing: a huge file is not read
        elif sha256_file(path) != entry.sha256:
            problems.append(f"{rel}: sha256 differs from the manifest (tampered or corrupted)")
        result.files_checked += 1
    for rel in sorted(present - set(listed) - {package.MANIFEST} - KEEP_REMOTE):
        problems.append(f"{rel}: not in the manifest")
    if problems:
        return  # never run artifacts whose bytes are not the published ones
    if package.PARITY not in listed:
        raise schema.RepoProblem(f"repo's manifest does not list {package.PARITY}")
    report = schema.parity_record(schema.read_json(folder, package.PARITY, links_within=blobs, what="parity"),
                                  manifest)
    order = [g.batch for g in report.golden]
    shapes = {g.batch: g.shape for g in report.golden}
    inputs = schema.load_golden(inside(folder, manifest.golden.inputs, kind="file", links_within=blobs),
                                manifest.golden.inputs, order, shapes)
    outputs = schema.load_golden(inside(folder, manifest.golden.outputs, kind="file", links_within=blobs),
                                 manifest.golden.outputs, order, shapes)
    batches = [parity.GoldenBatch(name, inputs[name]) for name in order]
    reference = [outputs[name] for name in order]
    owner = {rel: entry for entry in manifest.artifacts.values() for rel in entry.files}
    for entry in manifest.artifacts.values():  # every folder a runner opens
        inside(folder, entry.folder, kind="dir", links_within=blobs)
    for rel in sorted(listed):  # what every graph reads, found by content: a runtime does not go by the name
        entry = owner.get(rel)
        home, allowed = (entry.folder, entry.files) if entry else (rel.rpartition("/")[0], set(listed))
        schema.onnx_external_data(inside(folder, rel, kind="file", links_within=blobs), rel, home, allowed,
                                  required=rel.endswith(".onnx"))
    for name, entry in manifest.artifacts.items():
        emit("verify", f"running {name} on the golden inputs")
        stage = get_stage(entry.stage)
        folder_in_repo = folder / "/".join(schema.parts(entry.folder))  # checked inside above
        prefix = "/".join(schema.parts(entry.folder)) + "/"
        artifact = Artifact(name=name, files=tuple(f.removeprefix(prefix) for f in entry.files),
                            metadata=dict(entry.metadata), skips_padding=entry.skips_padding)
        gate = report.artifacts[name].gate
        for note in stage.ignored_settings(artifact.metadata):  # the runner applies only what the project writes
            emit("note", f"{name}: repo's {note}")
        try:
            runner = stage.runner(folder_in_repo, artifact)
            check = parity.check_artifact(name, runner, batches, reference, gate, skips_padding=artifact.skips_padding,
                                          token_outputs=artifact.metadata.get("token_outputs"),
                                          numerics=(artifact.metadata.get("numerics") or {}).get("gated_with"))
        except Exception as e:  # a repo's artifact or metadata the runtime rejects: the repo fails, in one line
            first = (str(e).strip().splitlines() or [""])[0][:200]
            problems.append(f"{name}: the repo's artifact cannot be run: {type(e).__name__}: {first}")
            continue
        problems.extend(check.failures)
        result.artifacts_checked.append(name)

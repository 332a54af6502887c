"""A Hub-compatible HTTP server on 127.0.0.1 for tests, driven by the real huggingface_hub client.

It keeps model repos on disk: content-addressed blobs (by sha256), commits with real git blob
SHA-1 oids for regular files and sha256 for LFS ones, branches, tags and pull-request refs. It
serves what `create_repo`, `repo_info`, `list_repo_refs`, `list_repo_tree`, `create_commit`
(preupload, LFS batch and upload, NDJSON commit with a parent check), `create_tag`,
`create_branch`, `hf_hub_download` and `snapshot_download` use. Faults can be injected per
request path, for the reliability tests. It listens on loopback only and never calls out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".onnx", ".onnx_data", ".npz", ".safetensors", ".pt", ".pt2", ".bin", ".png")
LFS_MIN_SIZE = 1 << 20


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Entry:
    size: int
    sha256: str
    git_oid: str
    lfs: bool


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, Entry]


@dataclass
class Repo:
    id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pulls: int = 0
    lfs: set[str] = field(default_factory=set)  # LFS objects uploaded to this repo (the Hub keeps them per repo)

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        return revision if revision in self.commits else None


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int  # 0 = drop the connection without answering; HANG = keep it open and never answer
    times: int


HANG = -1  # a fault status: the server reads the request and then says nothing (until it shuts down)


class HubState:
    """Repos, blobs and the request log; thread-safe through one lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        self.repos: dict[str, Repo] = {}
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []  # (method, path, status)
        self.auth_headers: list[str] = []
        # called with the repo id when a commit request arrives, before its parent is checked
        # (a test's concurrent writer)
        self.before_commit: Callable[[str], object] | None = None
        # commits to apply and then answer by closing the connection (a response lost on the way back)
        self.drop_after_commit = 0
        self.released = threading.Event()  # set at shutdown: requests held by a HANG fault end then

    # --- test controls -------------------------------------------------------------------

    def inject(self, method: str, pattern: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests matching ``method`` and ``pattern`` with ``status``
        (0: close the connection without an answer; HANG: accept it and never answer)."""
        with self.lock:
            self.faults.append(Fault(method, re.compile(pattern), status, times))

    def commits(self, repo_id: str) -> int:
        return len(self.repos[repo_id].commits)

    def head(self, repo_id: str, branch: str = "main") -> str:
        return self.repos[repo_id].branches[branch]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        commit = repo.commits[repo.resolve(revision) or ""]
        return {p: self.blob(e.sha256) for p, e in commit.files.items()}

    def tamper(self, repo_id: str, path: str, data: bytes, message: str = "tamper") -> str:
        """Commit other bytes under ``path`` on main, as a malicious or careless writer would."""
        with self.lock:
            repo = self.repos[repo_id]
            head = repo.commits[repo.branches["main"]]
            files = dict(head.files)
            files[path] = self.store(data, lfs=path in head.files and head.files[path].lfs)
            if files[path].lfs:
                repo.lfs.add(files[path].sha256)
            return self.commit(repo, "main", head.oid, files, message)

    # --- storage ---------------------------------------------------------------------------

    def blob(self, sha256: str) -> bytes:
        return (self.root / "blobs" / sha256).read_bytes()

    def store(self, data: bytes, lfs: bool) -> Entry:
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / "blobs" / digest
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.rename(path)
        return Entry(size=len(data), sha256=digest, git_oid=git_oid(data), lfs=lfs)

    def commit(self, repo: Repo, branch: str, parent: str | None, files: dict[str, Entry], message: str) -> str:
        blob = json.dumps([parent, message, time.time_ns(), sorted((p, e.git_oid) for p, e in files.items())])
        oid = hashlib.sha1(blob.encode()).hexdigest()
        repo.commits[oid] = Commit(oid, parent, message, files)
        repo.branches[branch] = oid
        return oid

    def create(self, repo_id: str, private: bool) -> bool:
        with self.lock:
            if repo_id in self.repos:
                return False
            repo = Repo(repo_id, private)
            attributes = self.store(b"*.onnx filter=lfs diff=lfs merge=lfs -text\n", lfs=False)
            self.commit(repo, "main", None, {".gitattributes": attributes}, "initial commit")
            self.repos[repo_id] = repo
            return True


class _Dropped(Exception):
    pass


def make_handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

        # --- plumbing ----------------------------------------------------------------------

        def _base(self) -> str:
            host, port = self.server.server_address[:2]  # type: ignore[misc]
            return f"http://{host}:{port}"

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
                  raw: bytes | None = None, head: bool = False) -> None:
            data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(data)
            state.log.append((self.command, self.path, status))

        def _error(self, status: int, message: str, code: str | None = None) -> None:
            self._send(status, {"error": message}, {"X-Error-Code": code} if code else None)

        def _fault(self) -> bool:
            hang = False
            with state.lock:
                for fault in state.faults:
                    if fault.times > 0 and fault.method == self.command and fault.pattern.search(self.path):
                        fault.times -= 1
                        self._body()  # read the request whole, or its body would be parsed as the next request
                        if fault.status == 0:
                            state.log.append((self.command, self.path, 0))
                            raise _Dropped
                        if fault.status != HANG:
                            self._error(fault.status, "injected fault")
                            return True
                        state.log.append((self.command, self.path, HANG))
                        hang = True
                        break
            if hang:  # outside the lock, so the rest of the Hub keeps answering; released at shutdown
                state.released.wait(600)
                raise _Dropped
            return False

        def _dispatch(self) -> None:
            if self.headers.get("Authorization"):
                state.auth_headers.append(self.headers["Authorization"])
            try:
                if self._fault():
                    return
                self._route()
            except _Dropped:
                self.close_connection = True
                self.connection.shutdown(2)

        do_GET = do_POST = do_PUT = do_HEAD = _dispatch  # noqa: N815

        # --- routes ------------------------------------------------------------------------

        def _route(self) -> None:
            url = urlsplit(self.path)
            path, query = url.path, parse_qs(url.query)
            m = self.command
            if m == "POST" and path == "/api/repos/create":
                return self._create_repo()
            if m == "POST" and path == "/api/validate-yaml":
                self._body()
                return self._send(200, {"errors": [], "warnings": []})
            if m == "PUT" and path.startswith("/lfs-upload/"):
                repo_id, _, oid = path.removeprefix("/lfs-upload/").rpartition("/")
                return self._lfs_put(repo_id, oid)
            match = re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
            if m == "POST" and match:
                return self._lfs_batch(match[1])
            match = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
            if m == "GET" and match:
                return self._info(match[1], unquote(match[2]) if match[2] else "main")
            match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(tree|preupload|commit|tag|branch)/([^/]+)(/.*)?", path)
            if match:
                repo_id, action, rev, rest = match[1], match[2], unquote(match[3]), unquote(match[4] or "")
                if m == "GET" and action == "tree":
                    return self._tree(repo_id, rev, rest.strip("/"))
                if m == "POST" and action == "preupload":
                    return self._preupload(repo_id, rev)
                if m == "POST" and action == "commit":
                    return self._commit(repo_id, rev, "1" in query.get("create_pr", []))
                if m == "POST" and action == "tag":
                    return self._tag(repo_id, rev)
                if m == "POST" and action == "branch":
                    return self._branch(repo_id, rev)
            match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/refs", path)
            if m == "GET" and match:
                return self._refs(match[1])
            match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if m in ("GET", "HEAD") and match:
                return self._resolve(match[1], unquote(match[2]), unquote(match[3]), head=m == "HEAD")
            self._error(404, f"no route for {m} {path}")

        def _repo(self, repo_id: str) -> Repo | None:
            repo = state.repos.get(repo_id)
            if repo is None:
                self._error(404, "Repository not found", "RepoNotFound")
            return repo

        def _write_allowed(self) -> bool:
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                self._error(401, "Invalid credentials in Authorization header")
                return False
            return True

        def _create_repo(self) -> None:
            payload = json.loads(self._body() or b"{}")
            if not self._write_allowed():
                return
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
            url = f"{self._base()}/{repo_id}"
            if state.create(repo_id, bool(payload.get("private"))):
                return self._send(200, {"url": url, "name": repo_id})
            self._send(409, {"error": "You already created this model repo", "url": url})

        def _info(self, repo_id: str, revision: str) -> None:
            with state.lock:
                repo = self._repo(repo_id)
                if repo is None:
                    return
                oid = repo.resolve(revision)
                if oid is None:
                    return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                commit = repo.commits[oid]
                self._send(200, {
                    "id": repo_id, "modelId": repo_id, "sha": oid, "private": repo.private, "disabled": False,
                    "lastModified": "2026-11-24T00:00:00.000Z", "tags": [], "downloads": 0, "likes": 0,
                    "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                })

        def _tree(self, repo_id: str, revision: str, prefix: str) -> None:
            with state.lock:
                repo = self._repo(repo_id)
                if repo is None:
                    return
                oid = repo.resolve(revision)
                if oid is None:
                    return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                entries = []
                for path, e in sorted(repo.commits[oid].files.items()):
                    if prefix and not path.startswith(prefix + "/"):
                        continue
                    item: dict[str, Any] = {"type": "file", "path": path, "size": e.size, "oid": e.git_oid}
                    if e.lfs:
                        item["lfs"] = {"oid": e.sha256, "size": e.size, "pointerSize": 134}
                    entries.append(item)
                self._send(200, entries)

        def _refs(self, repo_id: str) -> None:
            with state.lock:
                repo = self._repo(repo_id)
                if repo is None:
                    return
                self._send(200, {
                    "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c}
                                 for n, c in sorted(repo.branches.items()) if not n.startswith("refs/pr/")],
                    "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c}
                             for n, c in sorted(repo.tags.items())],
                    "converts": [],
                    "pullRequests": [{"name": n, "ref": n, "targetCommit": c}
                                     for n, c in sorted(repo.branches.items()) if n.startswith("refs/pr/")],
                })

        def _preupload(self, repo_id: str, revision: str) -> None:
            payload = json.loads(self._body() or b"{}")
            with state.lock:
                repo = self._repo(repo_id)
                if repo is None:
                    return
                oid = repo.resolve(revision)
                current = repo.commits[oid].files if oid else {}
                files = []
                for f in payload.get("files", []):
                    lfs = f["size"] >= LFS_MIN_SIZE or f["path"].endswith(LFS_SUFFIXES)
                    existing = current.get(f["path"])
                    remote = None if existing is None else (existing.sha256 if existing.lfs else existing.git_oid)
                    files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular",
                                  "shouldIgnore": False, "oid": remote})
                self._send(200, {"files": files, "commitOid": oid})

        def _lfs_batch(self, repo_id: str) -> None:
            payload = json.loads(self._body() or b"{}")
            if self._repo(repo_id) is None or not self._write_allowed():
                return
            objects = []
            for obj in payload.get("objects", []):
                item: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in state.repos[repo_id].lfs:
                    href = f"{self._base()}/lfs-upload/{repo_id}/{obj['oid']}"
                    item["actions"] = {"upload": {"href": href, "header": {}}}
                objects.append(item)
            self._send(200, {"transfer": "basic", "objects": objects})

        def _lfs_put(self, repo_id: str, oid: str) -> None:
            data = self._body()
            if hashlib.sha256(data).hexdigest() != oid:
                return self._error(400, "sha256 of the uploaded content does not match the oid")
            state.store(data, lfs=True)
            with state.lock:
                if (repo := self._repo(repo_id)) is not None:
                    repo.lfs.add(oid)
                    self._send(200, {})

        def _commit(self, repo_id: str, revision: str, create_pr: bool) -> None:
            lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
            if not self._write_allowed():
                return
            if state.before_commit is not None:
                state.before_commit(repo_id)
            with state.lock:
                repo = self._repo(repo_id)
                if repo is None:
                    return
                head_oid = repo.resolve(revision)
                if head_oid is None or (revision not in repo.branches and not create_pr):
                    return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                header = next((x["value"] for x in lines if x["key"] == "header"), {})
                parent = header.get("parentCommit")
                if parent is not None and parent != head_oid:
                    return self._error(412, "A commit has happened since. Please refresh and try again.")
                files = dict(repo.commits[head_oid].files)
                for item in lines:
                    key, value = item["key"], item["value"]
                    if key == "file":
                        files[value["path"]] = state.store(base64.b64decode(value["content"]), lfs=False)
                    elif key == "lfsFile":
                        blob = state.root / "blobs" / value["oid"]
                        if value["oid"] not in repo.lfs or not blob.exists():
                            return self._error(422, f"LFS object {value['oid']} was never uploaded")
                        files[value["path"]] = Entry(size=blob.stat().st_size, sha256=value["oid"],
                                                     git_oid=git_oid(blob.read_bytes()), lfs=True)
                    elif key == "deletedFile":
                        if value["path"] not in files:
                            return self._error(404, "A file with this name doesn't exist", "EntryNotFound")
                        del files[value["path"]]
                    elif key == "deletedFolder":
                        prefix = value["path"].rstrip("/") + "/"
                        files = {p: e for p, e in files.items() if not p.startswith(prefix)}
                branch = revision
                pr_url = None
                if create_pr:
                    repo.pulls += 1
                    branch = f"refs/pr/{repo.pulls}"
                    pr_url = f"{self._base()}/{repo_id}/discussions/{repo.pulls}"
                oid = state.commit(repo, branch, head_oid, files, header.get("summary", ""))
                if state.drop_after_commit > 0:
                    state.drop_after_commit -= 1
                    state.log.append((self.command, self.path, 0))
                    raise _Dropped
                self._send(200, {"commitUrl": f"{self._base()}/{repo_id}/commit/{oid}", "commitOid": oid,
                                 "pullRequestUrl": pr_url, "success": True})

        def _tag(self, repo_id: str, revision: str) -> None:
            payload = json.loads(self._body() or b"{}")
            if not self._write_allowed():
                return
            with state.lock:
                repo = self._repo(repo_id)
                if repo is None:
                    return
                oid = repo.resolve(revision)
                if oid is None:
                    return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                if payload["tag"] in repo.tags:
                    return self._error(409, f"Tag {payload['tag']} already exists")
                repo.tags[payload["tag"]] = oid
                self._send(200, {})

        def _branch(self, repo_id: str, name: str) -> None:
            payload = json.loads(self._body() or b"{}")
            if not self._write_allowed():
                return
            with state.lock:
                repo = self._repo(repo_id)
                if repo is None:
                    return
                if name in repo.branches:
                    return self._error(409, f"Branch {name} already exists")
                start = repo.resolve(payload.get("startingPoint") or "main")
                if start is None:
                    return self._error(404, "Invalid starting point", "RevisionNotFound")
                repo.branches[name] = start
                self._send(200, {})

        def _resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
            with state.lock:
                repo = self._repo(repo_id)
                if repo is None:
                    return
                oid = repo.resolve(revision)
                if oid is None:
                    return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                entry = repo.commits[oid].files.get(path)
                if entry is None:
                    return self._error(404, f"{path} does not exist", "EntryNotFound")
                headers = {"X-Repo-Commit": oid, "ETag": f'"{entry.sha256 if entry.lfs else entry.git_oid}"'}
                if entry.lfs:
                    headers["X-Linked-Etag"] = f'"{entry.sha256}"'
                    headers["X-Linked-Size"] = str(entry.size)
                self._send(200, headers=headers, raw=state.blob(entry.sha256), head=head)

    return Handler


class HubServer:
    """``with HubServer(root) as hub: hub.url ...`` — a loopback Hub on a free port."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.state = HubState(root)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), make_handler(self.state))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

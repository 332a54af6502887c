"""The ``convert`` command line: a thin click layer over the library.

Each command parses its arguments and calls one library function. Heavy libraries (torch,
transformers, optimum) are imported inside those functions, never at start-up, so ``--help``,
``schema`` and ``validate`` stay fast. Errors print one line per problem and exit non-zero
(2 bad input, 1 failed build); the traceback only with ``--debug``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from pipeline import __version__
from pipeline.errors import EXIT_FAILED, PipelineError

DEBUG_HELP = "Show tracebacks and debug logs."


class _Group(click.Group):
    """Turns pipeline errors into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PipelineError as e:
            _fail(ctx, e.lines(), e.exit_code, e)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            _fail(ctx, ["interrupted"], 130, None)
        except OSError as e:  # disk full, unwritable folder: what and where, and the last good output stays
            where = f"{e.filename}: " if e.filename else ""
            _fail(ctx, [f"cannot write or read {where}{e.strerror or e} (earlier outputs are left as they were)"],
                  EXIT_FAILED, e)
        except Exception as e:  # an unexpected bug: one line, the traceback on request
            _fail(ctx, [f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)"],
                  EXIT_FAILED, e)


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.meta.get("debug"))


def _fail(ctx: click.Context, lines: list[str], code: int, exc: BaseException | None) -> None:
    if exc is not None and _debug(ctx):
        traceback.print_exception(exc, file=sys.stderr)
    for line in lines:
        click.echo(f"error: {line}", err=True)
    ctx.exit(code)


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.find_root().meta["debug"] = True
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    return value


debug_option = click.option("--debug", is_flag=True, expose_value=False, is_eager=True,
                            callback=_set_debug, help=DEBUG_HELP)


def _out_folder(_ctx: click.Context, _param: click.Parameter, value: str) -> Path:
    """``--out``: not empty (it would silently mean the current folder)."""
    if not value.strip():
        raise click.BadParameter("must not be empty: name the folder (the default is 'artifacts')")
    return Path(value)


def _writable_out(ctx: click.Context, param: click.Parameter, value: str) -> Path:
    """``--out`` of a build: not empty, and a folder this process can create or write into (checked
    before the recipe is read, so nothing is written when it is not)."""
    out = _out_folder(ctx, param, value)
    probe = out.absolute()
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():  # a dangling link: creating through it would write elsewhere or fail
            raise click.BadParameter(f"{out}: {probe} is a broken symbolic link")
        probe = probe.parent
    if not probe.is_dir():
        raise click.BadParameter(f"{out}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{out}: {probe} is not writable")
    return out


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="convert")
@debug_option
def main() -> None:
    """Convert a Hugging Face checkpoint into parity-gated CPU inference artifacts."""


@main.command()
@click.argument("recipes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False), default="artifacts", callback=_writable_out,
              show_default=True, help="Folder that receives <out>/<recipe name>/.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--force", is_flag=True, help="Rebuild every step, reusing nothing.")
@click.option("--force-stage", "force_stages", multiple=True, metavar="NAME",
              help="Rebuild this target's stage even if its fingerprint matches (repeatable).")
@click.option("--jobs", "-j", type=click.IntRange(1), default=1, show_default=True,
              help="Recipes built at once (several recipes); each gets cores/jobs threads.")
@click.option("--keep-going", is_flag=True, help="With several recipes, go on after one fails.")
@click.option("--push", "push_after", is_flag=True, help="Push each passing package to its recipe's Hub repo.")
@debug_option
def build(recipes: tuple[Path, ...], out: Path, as_json: bool, force: bool, force_stages: tuple[str, ...],
          jobs: int, keep_going: bool, push_after: bool) -> None:
    """Build, gate and package every target of RECIPE(S), reusing every unchanged step.

    RECIPES are recipe files or folders of them; with more than one recipe, each builds in its own
    process, --jobs at a time, and a summary table ends the run.
    """
    from pipeline import multi

    paths = multi.find_recipes(recipes)
    if len(paths) != 1 or recipes[0].is_dir():
        extra = [*(["--force"] if force else []), *(a for name in force_stages for a in ("--force-stage", name)),
                 *(["--push"] if push_after else [])]
        _build_many(paths, out, jobs=jobs, keep_going=keep_going, extra=extra, as_json=as_json)
        return
    _build_one(paths[0], out, as_json=as_json, force=force, force_stages=force_stages, push_after=push_after)


def _build_many(paths: list[Path], out: Path, *, jobs: int, keep_going: bool, extra: list[str],
                as_json: bool) -> None:
    from pipeline import multi
    from pipeline.errors import PipelineError
    from pipeline.report import print_summary

    if not paths:
        raise click.BadParameter("no *.yaml recipes there", param_hint="RECIPES")

    def done(result: multi.JobResult) -> None:
        if not as_json:
            click.echo(f"{result.status:8} {result.recipe} ({result.seconds:.1f} s)"
                       + (f": {result.error}" if result.error else ""), err=True)

    results = multi.build_many(paths, out, jobs=jobs, keep_going=keep_going, extra_args=extra, on_done=done)
    if as_json:
        click.echo(json.dumps(multi.summary_rows(results), indent=2))
    else:
        print_summary(results)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise PipelineError(f"{len(failed)} of {len(results)} recipes failed: "
                            + ", ".join(Path(r.recipe).name for r in failed))


def _build_one(recipe: Path, out: Path, *, as_json: bool, force: bool, force_stages: tuple[str, ...],
               push_after: bool = False) -> None:
    from pipeline import build as build_mod
    from pipeline import recipe as recipe_mod
    from pipeline.errors import ParityError
    from pipeline.report import print_parity, progress

    loaded = recipe_mod.load(recipe)
    unknown = sorted(set(force_stages) - set(loaded.target_params()))
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} (this recipe builds: {', '.join(loaded.target_params())})",
                                 param_hint="--force-stage")
    options = build_mod.Options(force=force, force_stages=frozenset(force_stages))
    with progress(enabled=not as_json) as on_event:
        try:
            result = build_mod.build(loaded, out, on_event=on_event, options=options)
        except ParityError as e:
            if as_json:
                click.echo(json.dumps({"passed": False, "failures": e.failures, "parity": e.report}, indent=2))
            else:
                print_parity(e.report)
            raise
    pushed = None
    if push_after:
        from pipeline import hub

        with progress(enabled=not as_json) as on_event:
            pushed = hub.push(result.build_dir, on_event=on_event)
    if as_json:
        click.echo(json.dumps({**result.to_json(), "pushed": pushed.to_json() if pushed else None}, indent=2))
        return
    print_parity(result.parity)
    if result.recommended:
        click.echo(f"recommended: {result.recommended}")
    reused = f"; reused: {', '.join(result.reused)}" if result.reused else ""
    click.echo(f"package: {result.package_dir}  ({result.timings['total']:.1f} s{reused})")
    if pushed:
        _print_push(pushed, as_json=False)


@main.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False), default="artifacts", callback=_out_folder,
              show_default=True, help="Folder holding <out>/<recipe name>/.")
@click.option("--runs", type=click.IntRange(1), help="Timed runs per artifact and shape (default: the recipe's).")
@click.option("--threads", type=click.IntRange(1), help="Intra-op threads (default: the recipe's).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@debug_option
def bench(recipe: Path, out: Path, runs: int | None, threads: int | None, as_json: bool) -> None:
    """Measure eager PyTorch and every passing artifact of an existing build of RECIPE."""
    import dataclasses

    from pipeline import build as build_mod
    from pipeline import recipe as recipe_mod
    from pipeline.report import print_bench, progress

    loaded = recipe_mod.load(recipe)
    settings = loaded.bench.settings()
    settings = dataclasses.replace(settings, **{k: v for k, v in (("runs", runs), ("threads", threads)) if v})
    with progress(enabled=not as_json) as on_event:
        report = build_mod.bench(loaded, out, settings=settings, on_event=on_event)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_bench(report)


@main.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@debug_option
def validate(recipe: Path) -> None:
    """Check RECIPE against the schema, optimum's task registry and the files it names (loads no model)."""
    from pipeline import recipe as recipe_mod
    from pipeline.stages import get_stage

    loaded = recipe_mod.load(recipe)
    recipe_mod.check_installed(loaded)
    recipe_mod.check_task(loaded)
    for name, params in loaded.target_params().items():  # files a target reads (a calibration file)
        get_stage(name).fingerprint_inputs(params, loaded)
    if loaded.bench.texts_file is not None:
        from pipeline import traffic

        traffic.read_texts(loaded)
    targets = ", ".join(loaded.target_params())
    click.echo(f"{recipe}: ok ({loaded.name}: {loaded.task}; targets: {targets})")


def _build_dir(target: Path, out: Path) -> Path:
    """A recipe file names its build folder under ``out``; a folder is a build or package folder."""
    if target.is_file() and target.suffix in (".yaml", ".yml"):
        from pipeline import recipe as recipe_mod

        return out / recipe_mod.load(target).name
    return target


def _print_push(result: object, as_json: bool) -> None:
    from pipeline.hub import PushResult

    assert isinstance(result, PushResult)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    if result.dry_run:
        click.echo("dry run: nothing is written. The push would:")
    for op in result.operations:
        click.echo(f"  {op}")
    if not result.dry_run:
        what = (f"pushed {result.repo_id}@{(result.commit or '')[:12]}" if result.changed
                else f"{result.repo_id} is up to date (no commit)")
        click.echo(what + (f"; pull request: {result.pr_url}" if result.pr_url else ""))


@main.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False), default="artifacts", callback=_out_folder,
              show_default=True, help="Where a RECIPE's build folder is.")
@click.option("--dry-run", is_flag=True, help="Print the exact operations; write nothing.")
@click.option("--create-pr", is_flag=True, help="Open a pull request instead of committing to the branch.")
@click.option("--revision", default="main", show_default=True, metavar="BRANCH", help="Branch to commit to.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@debug_option
def push(target: Path, out: Path, dry_run: bool, create_pr: bool, revision: str, as_json: bool) -> None:
    """Publish a passing package (BUILD_DIR, or a RECIPE's build) to its Hub repo in one commit, then tag it.

    The token comes from HF_TOKEN or `huggingface-cli login` and is never printed or stored.
    """
    from pipeline import hub
    from pipeline.report import progress

    with progress(enabled=not as_json) as on_event:
        result = hub.push(_build_dir(target, out), revision=revision, create_pr=create_pr, dry_run=dry_run,
                          on_event=on_event)
    _print_push(result, as_json)


@main.command()
@click.argument("repo", metavar="REPO[@REV]")
@click.option("--manifest-sha256", help="Also require the manifest to have this sha256 (from a trusted record).")
@click.option("--offline", is_flag=True, help="Verify the copy in the local cache without asking the Hub which "
              "commit REV is now.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@debug_option
def verify(repo: str, manifest_sha256: str | None, offline: bool, as_json: bool) -> None:
    """Resolve REPO[@REV] on the Hub, download it and check every file's sha256 and every artifact
    against the golden outputs."""
    import re

    from pipeline import hub
    from pipeline.errors import PipelineError
    from pipeline.recipe import HUB_ID
    from pipeline.report import progress

    repo_id, _, rev = repo.partition("@")
    if not re.fullmatch(HUB_ID, repo_id):
        raise click.BadParameter(f"{repo_id!r} is not a Hub repo id (org/name)", param_hint="REPO[@REV]")
    with progress(enabled=not as_json) as on_event:
        result = hub.verify(repo_id, rev or "main", manifest_sha256=manifest_sha256, offline=offline,
                            on_event=on_event)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    if not result.ok:
        raise PipelineError(f"{repo}: {len(result.problems)} problem(s): " + "; ".join(result.problems))
    if not as_json:
        from pipeline.cpu import summary

        click.echo(f"{repo_id}@{(result.commit or '')[:12]}: ok ({result.files_checked} files match the manifest; "
                   f"golden outputs reproduced by {', '.join(result.artifacts_checked) or 'no artifact'})")
        if result.offline:
            click.echo(f"offline: verified the cached copy of commit {result.commit}; the Hub was not asked where "
                       f"{rev or 'main'} points now")
        click.echo(f"re-gated on: {summary(result.cpu)}")


@main.command()
@click.argument("recipes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--changed-since", metavar="GIT_REF", help="Only recipes whose file, local source or the tool "
              "changed since this git revision.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "github-matrix"]), default="table",
              show_default=True)
@debug_option
def plan(recipes: tuple[Path, ...], changed_since: str | None, fmt: str) -> None:
    """List the recipes to (re)build; as a GitHub Actions matrix with --format github-matrix."""
    from pipeline import multi

    entries = multi.plan(recipes, changed_since=changed_since)
    if fmt == "github-matrix":
        click.echo(json.dumps(multi.github_matrix(entries), separators=(",", ":")))
    elif fmt == "json":
        click.echo(json.dumps(entries, indent=2))
    else:
        for e in entries:
            click.echo(f"{e['name']:32} {e['recipe']:48} {e['reason']}")
        click.echo(f"{len(entries)} recipe(s) to build", err=True)


@main.command()
def schema() -> None:
    """Print the recipe JSON schema (for editor completion)."""
    from pipeline import recipe as recipe_mod

    click.echo(json.dumps(recipe_mod.json_schema(), indent=2))


def entry() -> None:
    """The console script: run, flush, then skip the interpreter's teardown.

    Tearing down torch, transformers and onnxruntime at exit took 0.75 s of a 6 s build here;
    every output is already written through rename and closed by then, so nothing is lost.
    """
    try:
        main()
        code = 0
    except SystemExit as e:
        if isinstance(e.code, str):
            click.echo(e.code, err=True)
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()

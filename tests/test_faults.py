"""Faults during a build: SIGKILL at random moments, a full disk, an unwritable output folder."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny import demo_shaped_recipe, write_recipe

KILL_TRIALS = 20


def _convert(*args: str, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=300, **kwargs)


def _files(out: Path) -> dict:
    return json.loads((out / "tiny" / "package" / "manifest.json").read_text())["files"]


def _kill_and_resume(recipe: Path, out: Path, kill_after_event: int, delay: float) -> str:
    """Start a build, SIGKILL it ``delay`` s after its ``kill_after_event``-th progress line, check what
    it left, resume it; returns the step it was killed in."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "build", str(recipe), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    step = "start-up"
    for seen, line in enumerate(proc.stderr, start=1):
        if line.strip():
            step = line.split()[1]
        if seen >= kill_after_event:
            break
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    stages = out / "tiny" / "stages"
    for folder in stages.iterdir() if stages.exists() else []:
        if not folder.name.startswith("."):  # a renamed stage folder is always a complete one
            assert (folder / "stage.json").is_file(), folder
    rerun = _convert("build", str(recipe), "--out", str(out), "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert not list((out / "tiny").rglob(".*.tmp-*"))
    return step


@pytest.mark.slow
def test_killed_builds_resume_to_a_byte_identical_package(tmp_path: Path, checkpoints: dict) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # every target (TorchScript, torch.export, BetterTransformer, ONNX and its variants): each resumed
    # build is a new process with its own string hash seed, and must still give the same bytes
    recipe = demo_shaped_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")])
    reference = _convert("build", str(recipe), "--out", str(tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr
    expected = _files(tmp_path / "ref")
    events = len([line for line in reference.stderr.splitlines() if line.strip()])

    rng = random.Random(20261124)
    plans = [(tmp_path / f"trial-{i}", rng.randint(1, events), rng.uniform(0.0, 0.4)) for i in range(KILL_TRIALS)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        killed_in = list(pool.map(lambda p: _kill_and_resume(recipe, *p), plans))
    for out, _, _ in plans:
        assert _files(out) == expected, out
    assert len(set(killed_in)) >= 4, killed_in  # the kills landed in several different steps


def test_a_full_disk_fails_clearly_and_keeps_the_previous_package(tmp_path: Path, checkpoints: dict) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")])
    out = tmp_path / "out"
    assert _convert("build", str(recipe), "--out", str(out)).returncode == 0
    before = _files(out)
    graph_size = (out / "tiny" / "package" / "onnx" / "model.onnx").stat().st_size

    def small_disk() -> None:  # writes past this size fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (graph_size // 2, graph_size // 2))

    result = _convert("build", str(recipe), "--out", str(out), "--force", preexec_fn=small_disk)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "File too large" in errors[0] and "Traceback" not in result.stderr, errors
    assert _files(out) == before
    for rel, entry in before.items():
        assert (out / "tiny" / "package" / rel).stat().st_size == entry["size"]
    assert not list((out / "tiny").rglob(".*.tmp-*"))


def test_an_unwritable_output_folder_is_one_line(tmp_path: Path, checkpoints: dict) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", checkpoints[("bert", "feature-extraction")])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _convert("build", str(recipe), "--out", str(blocker / "out"))
    assert result.returncode == 2  # bad command-line input, found before anything is read or written
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"Error: Invalid value for '--out': {blocker}/out: {blocker} is not a folder", last
    assert "Traceback" not in result.stderr
    assert os.path.isfile(blocker)

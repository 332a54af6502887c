"""Every registered stage, and every architecture a stage claims, is built, gated and consumed by some test.

As optimum's ``test_all_models_tested``: a target or a layer map added without a test fails here. It
runs last (tests/conftest.py orders it) over what the other tests recorded (tests/coverage.py), and
only in a run of the whole suite: a partial run proves nothing.
"""

from __future__ import annotations

import pytest

from pipeline.stages import get_stage, registered_stages
from tests import coverage


def _proved(rows: list[coverage.Row], stage: str) -> list[coverage.Row]:
    """Rows where a test built ``stage``'s artifact (its name, or ``<name>-<variant>``), gated it and ran a consumer."""
    return [r for r in rows if (r.target == stage or r.target.startswith(f"{stage}-")) and r.built and r.parity
            and r.consumer]


def test_every_stage_and_every_claimed_architecture_is_built_and_consumed() -> None:
    if not coverage.WHOLE_SUITE:
        pytest.skip("needs the whole suite: it checks what every other test recorded")
    rows = coverage.rows()
    missing = [f"{name}: no test builds, gates and consumes it" for name in registered_stages()
               if not _proved(rows, name)]
    for name in registered_stages():
        tested = {r.arch.split(" ")[0] for r in _proved(rows, name)}
        missing += [f"{name}: claims {arch!r} (Stage.architectures), which no test builds and consumes"
                    for arch in get_stage(name).architectures if arch not in tested]
    assert not missing, "\n".join(missing)

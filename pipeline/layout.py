"""The name of every file and folder of a build directory and of a package: read here, nowhere else.

A build folder ``<out>/<recipe name>/``::

    stages/<target>/   a stage's files and stage.json (fingerprint, outputs with sha256, timings)
    golden/            golden inputs and eager outputs (.npz) and golden.json (fingerprint, batches)
    parity/<artifact>.json   one artifact's comparison with eager and its fingerprint
    parity.json        every artifact's comparison with eager, pass or fail
    bench.json, bench.png    the last benchmark and its chart
    package/           the Hub repo layout; replaced only by a build whose artifacts all passed
    package.json       the fingerprint the package was written for
    build.json         the result of the last build
    .lock              held by the build running now

A leaf: names and paths only; it reads and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# in a build folder
STAGES = "stages"
STAGE_RECORD = "stage.json"  # in stages/<target>/
GOLDEN = "golden"
GOLDEN_RECORD = "golden.json"  # in golden/
PARITY_RECORDS = "parity"
PARITY = "parity.json"  # in the build folder and in the package
BENCH_JSON = "bench.json"  # in the build folder and in the package
BENCH_PNG = "bench.png"
PACKAGE = "package"
PACKAGE_RECORD = "package.json"
BUILD_RECORD = "build.json"
LOCK = ".lock"
STATE = ".state.json"  # the stat cache: (size, mtime, inode) -> sha256 of the files the build wrote
# in golden/ and in the package
GOLDEN_INPUTS = "golden_inputs.npz"
GOLDEN_OUTPUTS = "golden_outputs.npz"
# in the package
MANIFEST = "manifest.json"
CARD = "README.md"


@dataclass(frozen=True)
class BuildDir:
    """The paths of one build folder."""

    root: Path

    def stage(self, target: str) -> Path:
        return self.root / STAGES / target

    def stage_record(self, target: str) -> Path:
        return self.stage(target) / STAGE_RECORD

    @property
    def stages(self) -> Path:
        return self.root / STAGES

    @property
    def golden(self) -> Path:
        return self.root / GOLDEN

    @property
    def golden_files(self) -> tuple[Path, Path]:
        return self.golden / GOLDEN_INPUTS, self.golden / GOLDEN_OUTPUTS

    @property
    def golden_record(self) -> Path:
        return self.golden / GOLDEN_RECORD

    def parity_record(self, artifact: str) -> Path:
        return self.root / PARITY_RECORDS / f"{artifact}.json"

    @property
    def parity(self) -> Path:
        return self.root / PARITY

    @property
    def bench_json(self) -> Path:
        return self.root / BENCH_JSON

    @property
    def bench_png(self) -> Path:
        return self.root / BENCH_PNG

    @property
    def package(self) -> Path:
        return self.root / PACKAGE

    @property
    def package_record(self) -> Path:
        return self.root / PACKAGE_RECORD

    @property
    def build_record(self) -> Path:
        return self.root / BUILD_RECORD

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def state(self) -> Path:
        return self.root / STATE

"""What ``convert verify`` accepts from a downloaded repo, which it treats as hostile.

The manifest and ``parity.json`` are validated against pydantic models (``extra="forbid"``), then
checked for meaning: every path in them is relative and stays inside the download
(``pipeline.paths``), every artifact's stage is registered, every file an artifact runs from is
one the manifest lists (and so hashed), and the golden npz files hold plain arrays under
``<batch>/<tensor>`` names (no pickles). A violation is a :class:`RepoProblem`: one line saying
what is wrong with the repo, which verify reports as a failed verification (exit 1).

This module reads the download; it runs nothing and writes nothing.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline import untrusted
from pipeline.errors import PipelineError
from pipeline.paths import MissingPath, UnsafePath, inside, parts
from pipeline.stages import Gate, registered_stages

SHA256 = r"^[0-9a-f]{64}$"
MAX_JSON_BYTES = 64 * 2**20  # a manifest or parity.json is kilobytes; a bigger one is not read
JSON_LIMITS = untrusted.Limits(max_bytes=MAX_JSON_BYTES, max_values=1_000_000, what="a repo's JSON file")
MAX_GOLDEN_BYTES = 4 * 2**30  # the golden arrays, unpacked
GOLDEN_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}/[A-Za-z0-9_.:/-]{1,200}$")
FILE_METADATA = ("file", "encoder", "weights")  # metadata keys naming a file a runner opens (relative to the folder)


class RepoProblem(PipelineError):
    """Something wrong with a downloaded repo; the message says what, in one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    sha256: str = Field(pattern=SHA256)
    size: int = Field(ge=0)


class ArtifactEntry(_Strict):
    stage: str
    folder: str
    files: list[str] = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)
    skips_padding: bool = False
    parity: Literal["passed"]
    cpu_classes: dict[str, dict[str, Any]] = Field(default_factory=dict)  # figures and offer per CPU class


class SourceRecord(_Strict):
    kind: Literal["hub", "folder", "package"]
    id: str
    revision: str | None = None
    fingerprint: str


class GoldenNames(_Strict):
    inputs: str
    outputs: str


class Timing(_Strict):
    bench: dict[str, Any] | None = None
    files: dict[str, FileEntry] = Field(default_factory=dict)


class SentenceTransformersRecord(_Strict):
    origin: Literal["copied from the checkpoint", "written from sentence_embedding"]
    modules: list[Literal["Transformer", "Pooling", "Normalize"]] = Field(min_length=1)
    max_seq_length: int | None = Field(default=None, ge=1)
    files: list[str] = Field(min_length=1)


class SourceWeightsRecord(_Strict):
    shipped: bool
    files: list[str] = Field(default_factory=list)
    reason: str


class Manifest(_Strict):
    format: Literal[1]
    name: str
    task: str
    recipe: dict[str, Any]
    recipe_sha256: str = Field(pattern=SHA256)
    source: SourceRecord
    command: str | None = None
    artifacts: dict[str, ArtifactEntry]
    recommended: str | None = None
    recommended_by_class: dict[str, str | None] = Field(default_factory=dict)
    golden: GoldenNames
    sentence_transformers: SentenceTransformersRecord | None = None
    source_weights: SourceWeightsRecord | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)
    gated_on: dict[str, Any] | None = None
    files: dict[str, FileEntry]
    timing: Timing | None = None

    def all_files(self) -> dict[str, FileEntry]:
        return {**self.files, **(self.timing.files if self.timing else {})}


class OutputRecord(_Strict):
    output: str
    shape: list[int]
    max_abs: float | None = None
    max_rel: float | None = None
    min_cosine: float | None = None
    min_pooled_cosine: float | None = None
    argmax_agreement: float | None = None
    over_tolerance: int | None = None
    elements: int | None = None
    non_finite: int | None = Field(default=None, ge=0)
    gated: bool = True
    failures: list[str] = Field(default_factory=list)


class BatchRecord(_Strict):
    batch: str
    shape: list[int]
    padded_tokens: int
    outputs: list[OutputRecord]


class ArtifactReport(_Strict):
    passed: bool
    artifact: str
    gate: Gate
    compared: str
    batches: list[BatchRecord]
    failures: list[str]
    cpu_classes: dict[str, dict[str, Any]] = Field(default_factory=dict)


class GoldenRecord(_Strict):
    batch: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")]
    shape: list[int]
    padded_tokens: int


class ParityRecord(_Strict):
    golden: list[GoldenRecord] = Field(min_length=1)
    artifacts: dict[str, ArtifactReport]


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return f"{where}: {what}{more}"


def read_json(folder: Path, rel: str, *, links_within: Path | None, what: str) -> Any:
    """Parse the repo's JSON file ``rel`` after checking it stays inside the download.

    Raises:
        RepoProblem: outside the repo, missing, too large, or not JSON.
    """
    try:
        path = inside(folder, rel, what=what, kind="file", links_within=links_within)
    except MissingPath:
        raise RepoProblem(f"repo has no {rel}") from None
    except UnsafePath as e:
        raise RepoProblem(f"repo's {rel} is not a file inside the repo: {e.reason}") from None
    try:
        return untrusted.read_json(path, JSON_LIMITS)
    except untrusted.Refused as e:
        if e.kind == "size":
            raise RepoProblem(f"repo's {rel} is {e.size} bytes, over the limit of {MAX_JSON_BYTES}") from None
        if e.reason.startswith("not valid JSON") or e.reason.startswith("not UTF-8"):
            raise RepoProblem(f"repo's {rel} is {e.reason}") from None
        raise RepoProblem(f"repo's {rel} is refused: {e.reason}") from None
    except OSError as e:
        raise RepoProblem(f"repo's {rel} cannot be read ({type(e).__name__})") from None


_Model = TypeVar("_Model", bound=BaseModel)


def _validated(model: type[_Model], data: Any, file: str, schema: str) -> _Model:
    """``data`` (parsed JSON of the repo's ``file``) as ``model``, or the first thing wrong with it."""
    if not isinstance(data, dict):
        raise RepoProblem(f"repo's {file} is not a JSON object (got a {type(data).__name__})")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise RepoProblem(f"repo's {file} does not match the {schema} schema: {_first_error(e)}") from None


def manifest(data: Any) -> Manifest:
    """The manifest, validated: schema, then every path inside the repo, registered stages, and
    the files each artifact runs from listed (so hashed).

    Raises:
        RepoProblem: the first thing wrong with it.
    """
    m = _validated(Manifest, data, "manifest.json", "manifest")
    listed = m.all_files()

    def keep_inside(where: str, rel: str) -> None:
        try:
            parts(rel, what=where)
        except UnsafePath as e:
            raise RepoProblem(f"repo's manifest points outside the repo: {where} {e.path!r} {e.reason}") from None

    for rel in listed:
        keep_inside("files", rel)
    for field, rel in (("golden.inputs", m.golden.inputs), ("golden.outputs", m.golden.outputs)):
        keep_inside(field, rel)
        if rel not in listed:
            raise RepoProblem(f"repo's manifest names {field} {rel!r}, a file it does not list")
    carried = {"sentence_transformers": m.sentence_transformers.files if m.sentence_transformers else [],
               "source_weights": m.source_weights.files if m.source_weights else []}
    for field, rels in carried.items():
        for rel in rels:
            keep_inside(f"{field}.files", rel)
            if rel not in listed:
                raise RepoProblem(f"repo's manifest lists {field}.files {rel!r} without a hash (not in files)")
    if m.source_weights and m.source_weights.shipped != bool(m.source_weights.files):
        raise RepoProblem("repo's manifest says source_weights.shipped is "
                          f"{str(m.source_weights.shipped).lower()} but lists {len(m.source_weights.files)} files")
    stages = registered_stages()
    for name, entry in m.artifacts.items():
        where = f"artifacts.{name}"
        if entry.stage not in stages:
            raise RepoProblem(f"repo's manifest names an unknown stage {entry.stage[:80]!r} for {where} "
                              f"(known: {', '.join(stages)})")
        keep_inside(f"{where}.folder", entry.folder)
        folder = "/".join(parts(entry.folder))
        for rel in entry.files:
            keep_inside(f"{where}.files", rel)
            if not rel.startswith(folder + "/") or "/".join(parts(rel)) != rel:
                raise RepoProblem(f"repo's manifest lists {where}.files {rel!r} outside its folder {entry.folder!r}")
            if rel not in listed:
                raise RepoProblem(f"repo's manifest lists {where}.files {rel!r} without a hash (not in files)")
        for key in FILE_METADATA:
            if key in entry.metadata:
                value = entry.metadata[key]
                keep_inside(f"{where}.metadata.{key}", value)
                if f"{folder}/{value}" not in entry.files:
                    raise RepoProblem(f"repo's manifest runs {where} from {value!r}, a file the artifact does not "
                                      "list (so its hash is not checked)")
    return m


def parity_record(data: Any, m: Manifest) -> ParityRecord:
    """parity.json, validated against the schema and the manifest (a gate for every artifact).

    Raises:
        RepoProblem: the first thing wrong with it.
    """
    record = _validated(ParityRecord, data, "parity.json", "parity")
    missing = sorted(set(m.artifacts) - set(record.artifacts))
    if missing:
        raise RepoProblem(f"repo's parity.json has no gate for {', '.join(missing)}")
    return record


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a member's .npy header declares, read without reading its data, and
    checked against the member's size: a header claiming more bytes than the member holds (a
    shape of petabytes in a kilobyte file) is refused before anything is allocated."""
    from numpy.lib import format as npy

    name = info.filename.removesuffix(".npy")
    with archive.open(info) as f:
        try:
            version = npy.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npy.read_array_header_1_0(f, max_header_size=10_000)
            elif version == (2, 0):
                shape, _, dtype = npy.read_array_header_2_0(f, max_header_size=10_000)
            else:
                raise RepoProblem(f"repo's {what} entry {name[:80]!r} has a .npy format version {version} that is "
                                  "not read (1.0 or 2.0)")
        except ValueError as e:
            raise RepoProblem(f"repo's {what} entry {name[:80]!r} has no valid .npy header: "
                              f"{str(e).splitlines()[0][:120]}") from None
        header = f.tell()
    if dtype.hasobject:
        raise RepoProblem(f"repo's {what} is not plain arrays: Object arrays cannot be loaded when "
                          f"allow_pickle=False (entry {name[:80]!r})")
    if dtype.kind not in "biufc" or dtype.fields is not None:
        raise RepoProblem(f"repo's {what} is not plain arrays: entry {name[:80]!r} has dtype {str(dtype)[:40]} "
                          "(numbers and booleans only)")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared != info.file_size - header:
        raise RepoProblem(f"repo's {what} entry {name[:80]!r} declares shape {tuple(shape)} of {dtype} "
                          f"({declared} bytes) but holds {info.file_size - header} bytes (tampered or corrupted)")
    return tuple(shape), dtype


def load_golden(path: Path, what: str, batches: list[str],
                shapes: dict[str, list[int]] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """A golden npz as ``{batch: {tensor: array}}``: plain arrays only (no pickles), names
    ``<batch>/<tensor>``, every batch of ``batches`` present, every float finite, and unpacked size
    bounded. Each member's .npy header is read first (shape and dtype, consistent with the member's
    size, within the budget) and, with ``shapes`` (parity.json's ``golden`` shapes by batch), every
    array of more than one value has the batch's size as its first dimension: nothing is allocated
    for an array whose header lies.

    Raises:
        RepoProblem: anything else.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            unpacked = sum(info.file_size for info in members)
            if unpacked > MAX_GOLDEN_BYTES:
                raise RepoProblem(f"repo's {what} unpacks to {unpacked} bytes, over the limit of {MAX_GOLDEN_BYTES}")
            for info in members:
                shape, _ = _npy_header(archive, info, what)
                batch = info.filename.split("/", 1)[0]
                expected = (shapes or {}).get(batch)
                if expected and len(shape) >= 1 and int(np.prod(shape, dtype=object)) > 1 and shape[0] != expected[0]:
                    raise RepoProblem(f"repo's {what} entry {info.filename.removesuffix('.npy')[:80]!r} has shape "
                                      f"{shape}, but parity.json gives batch {batch} {expected[0]} rows")
        out: dict[str, dict[str, np.ndarray]] = {}
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                if not GOLDEN_NAME.match(key) or ".." in key.split("/"):
                    raise RepoProblem(f"repo's {what} holds an entry named {key[:80]!r}, not <batch>/<tensor>")
                batch, name = key.split("/", 1)
                array = data[key]
                if array.dtype.hasobject:
                    raise RepoProblem(f"repo's {what} entry {key!r} holds Python objects")
                if array.dtype.kind in "fc" and not (bad := int(array.size - np.isfinite(array).sum())) == 0:
                    raise RepoProblem(f"repo's {what} entry {key!r} holds {bad} non-finite values (NaN or inf) of "
                                      f"{array.size}: a golden array must be finite")
                out.setdefault(batch, {})[name] = array
    except RepoProblem:
        raise
    except ValueError as e:  # numpy refuses object (pickled) arrays when allow_pickle=False
        raise RepoProblem(f"repo's {what} is not plain arrays: {str(e).splitlines()[0][:160]}") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise RepoProblem(f"repo's {what} is not a readable npz file ({type(e).__name__})") from None
    absent = [b for b in batches if b not in out]
    if absent:
        raise RepoProblem(f"repo's {what} has no batch {', '.join(absent[:5])} (parity.json names them)")
    return out


MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit: a bigger file is no ModelProto any runtime loads


def onnx_external_data(model_path: Path, rel: str, folder_in_repo: str, files: list[str] | set[str], *,
                       required: bool = True) -> None:
    """An ONNX graph's external-data locations must be files its artifact lists (so hashed), inside
    its folder: onnxruntime would otherwise read whatever path the graph names.

    ``required=False`` probes a file by content: one that does not parse as a ModelProto is left
    alone (a graph is found whatever its name: ``onnx/model.bin`` is checked like ``model.onnx``).

    Raises:
        RepoProblem: a location outside, or not listed; with ``required``, not a graph at all.
    """
    import onnx
    from google.protobuf.message import DecodeError

    if not required and model_path.stat().st_size > MAX_PROTO_BYTES:
        return
    try:
        graph = onnx.ModelProto()
        graph.ParseFromString(model_path.read_bytes())
    except (DecodeError, RuntimeError, ValueError, RecursionError) as e:  # protobuf: DecodeError and others
        if not required:
            return
        raise RepoProblem(f"repo's {rel} is not a readable ONNX graph ({type(e).__name__})") from None
    tensors = list(graph.graph.initializer)
    for node in graph.graph.node:
        tensors += [a.t for a in node.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        try:
            home = parts(folder_in_repo) if folder_in_repo else ()  # "": a graph at the repo's top level
            target = "/".join((*home, *parts(location, what="location")))
        except UnsafePath as e:
            raise RepoProblem(f"repo's {rel} reads external data from {location[:80]!r} "
                              f"outside the repo: {e.reason}") from None
        if target not in files:
            raise RepoProblem(f"repo's {rel} reads external data from {location[:80]!r}, "
                              "a file its artifact does not list (so its hash is not checked)")

"""The parity gate: it catches a corrupted graph, a baked shape and a crash, and then nothing is packaged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline import package
from pipeline.cli import main
from pipeline.parity import EXPORT_SHAPE, GoldenBatch, check_artifact, compare
from pipeline.stages import Artifact, Gate, StageContext, register_stage, registered_stages, unregister_stage
from pipeline.stages.onnx import ONNX_FILE, OnnxExport, OnnxParams
from tests.tiny import write_recipe


def perturb_initializer(path: Path, scale: float = 0.05) -> str:
    """Add noise to the largest float initializer of an ONNX graph; returns its name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = max((i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT),
               key=lambda i: int(np.prod(i.dims)))
    values = numpy_helper.to_array(init)
    noisy = values + np.random.default_rng(1).normal(0, scale, values.shape).astype(values.dtype)
    init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(model, str(path))
    return init.name


@pytest.fixture
def corrupting_stage() -> Iterator[str]:
    """A target registered the way any target is, whose ONNX graph gets one initializer perturbed."""

    @register_stage("onnx_corrupted")
    class CorruptedOnnx(OnnxExport):
        params_model = OnnxParams

        def run(self, ctx: StageContext, params: OnnxParams) -> list[Artifact]:
            artifacts = super().run(ctx, params)
            perturb_initializer(ctx.workdir / ONNX_FILE)
            return [Artifact(name=self.name, files=a.files, metadata=a.metadata) for a in artifacts]

    yield "onnx_corrupted"
    unregister_stage("onnx_corrupted")


def test_corrupted_graph_fails_the_build_and_keeps_the_old_package(tmp_path: Path, checkpoints: dict,
                                                                    corrupting_stage: str) -> None:
    folder = checkpoints[("bert", "text-classification")]
    out = tmp_path / "out"
    good = write_recipe(tmp_path / "good.yaml", folder, task="text-classification")
    assert CliRunner().invoke(main, ["build", str(good), "--out", str(out)]).exit_code == 0
    manifest_before = (out / "tiny" / "package" / package.MANIFEST).read_bytes()

    bad = write_recipe(tmp_path / "bad.yaml", folder, task="text-classification",
                       targets={"onnx": {"opset": 17}, corrupting_stage: {"opset": 17}})
    result = CliRunner().invoke(main, ["build", str(bad), "--out", str(out)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: parity: ")]
    assert errors, result.stderr
    assert all(line.startswith(f"error: parity: {corrupting_stage}: output 'logits' at ") for line in errors)
    assert any("differs from eager: max |Δ|" in line and "> atol 1e-04" in line for line in errors)
    assert "Traceback" not in result.output
    report = json.loads((out / "tiny" / "parity.json").read_text())
    assert report["artifacts"]["onnx"]["passed"] is True
    assert report["artifacts"][corrupting_stage]["passed"] is False
    # nothing of the failed build was packaged: the previous package is byte-identical
    assert (out / "tiny" / "package" / package.MANIFEST).read_bytes() == manifest_before
    assert json.loads(manifest_before)["artifacts"].keys() == {"onnx"}


def test_registering_a_stage_twice_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_stage("onnx")(OnnxExport)
    assert registered_stages()["onnx"] is OnnxExport


def _batches() -> list[GoldenBatch]:
    ids = np.arange(30, dtype=np.int64).reshape(3, 10)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    return [GoldenBatch("synthetic_3x10", {"input_ids": ids, "attention_mask": mask})]


def test_a_baked_export_shape_fails_with_a_message_not_a_crash() -> None:
    batches = _batches()
    reference = [{"last_hidden_state": np.ones((3, 10, 4), dtype=np.float32)}]

    def baked(inputs):  # returns the export shape whatever it is given, as a traced constant would
        return {"last_hidden_state": np.ones((*EXPORT_SHAPE, 4), dtype=np.float32)}

    def crashes(inputs):
        raise RuntimeError("Got invalid dimensions for input: input_ids for the following indices\n index: 0")

    for runner, expected in ((baked, "has shape (2, 16, 4), eager (3, 10, 4)"), (crashes, "fails to run at 3x10")):
        report = check_artifact("x", runner, batches, reference, Gate(atol=1e-4))
        assert not report.passed
        assert len(report.failures) == 1
        assert expected in report.failures[0]
        assert "may have baked in its export shape 2x16" in report.failures[0]


def test_metrics_and_gates() -> None:
    expected = np.array([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]], dtype=np.float32)
    same, why = compare(expected.copy(), expected, Gate(atol=0.0, min_cosine=1.0, min_argmax_agreement=1.0),
                        logits=True)
    assert why == [] and same.max_abs == 0.0 and same.argmax_agreement == 1.0
    flipped = expected.copy()
    flipped[1] = [3.0, 4.0, 0.5]  # the second row's argmax moves
    check, why = compare(flipped, expected, Gate(atol=1e-3, min_cosine=0.99, min_argmax_agreement=1.0),
                         logits=True)
    assert check.max_abs == pytest.approx(5.0) and check.argmax_agreement == 0.5
    assert check.over_tolerance == 1
    assert [w.split(" ")[0] for w in why] == ["max", "cosine", "argmax"]
    # rtol scales with the eager magnitude
    _, why = compare(expected * 1.001, expected, Gate(atol=0.0, rtol=0.01), logits=False)
    assert why == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_a_non_finite_output_fails_every_gate_and_is_counted(bad: float) -> None:
    """Issue 26: NaN compares false with every bound (and made the row cosine 1.0): it must fail."""
    expected = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)
    mask = np.ones((2, 5), dtype=np.int64)
    actual = expected.copy()
    actual[0, 1, 2] = bad
    actual[1, 3, 0] = bad
    for gate in (Gate(atol=1e-4), Gate(min_cosine=0.99), Gate(min_pooled_cosine=0.99), Gate(atol=1.0, rtol=1.0)):
        check, why = compare(actual, expected, gate, logits=False, mask=mask)
        assert check.non_finite == 2
        assert "2 of 40 values are not finite (NaN or inf) where the reference is finite" in why, (gate, why)
        assert not check.min_cosine == 1.0  # NaN, not a perfect match
    report = check_artifact("x", lambda inputs: {"last_hidden_state": actual},
                            [GoldenBatch("texts", {"input_ids": np.zeros((2, 5), np.int64), "attention_mask": mask})],
                            [{"last_hidden_state": expected}], Gate(min_cosine=0.9))
    assert not report.passed and report.batches[0].outputs[0].non_finite == 2
    assert "2 of 40 values are not finite" in report.failures[0]


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_a_non_finite_reference_fails_even_when_the_output_matches_it(bad: float) -> None:
    expected = np.full((2, 3), bad, dtype=np.float32)
    check, why = compare(expected.copy(), expected, Gate(atol=1e-4, min_cosine=0.99), logits=True)
    assert check.non_finite == 6
    assert why and why[0].startswith("the reference holds 6 non-finite values (NaN or inf) of 6")


def test_finite_values_report_no_non_finite() -> None:
    expected = np.ones((2, 3), dtype=np.float32)
    check, why = compare(expected, expected, Gate(atol=0.0, min_cosine=1.0), logits=False)
    assert why == [] and check.non_finite == 0 and check.min_cosine == 1.0


def test_padding_positions_are_excluded_only_for_artifacts_that_skip_them() -> None:
    batches = _batches()  # row 1 has 4 padding positions
    eager = np.random.default_rng(0).normal(size=(3, 10, 4)).astype(np.float32)
    garbage_at_padding = eager.copy()
    garbage_at_padding[1, 6:] = 1e3

    def runner(inputs):
        return {"last_hidden_state": garbage_at_padding}

    strict = check_artifact("x", runner, batches, [{"last_hidden_state": eager}], Gate(atol=1e-5))
    assert not strict.passed and "at 16 of 120 values" in strict.failures[0]
    assert strict.compared.startswith("all positions")
    lenient = check_artifact("x", runner, batches, [{"last_hidden_state": eager}], Gate(atol=1e-5),
                             skips_padding=True)
    assert lenient.passed and "padding positions excluded" in lenient.compared
    garbage_at_padding[1, 2] += 1.0  # a real token differs: still caught
    assert not check_artifact("x", runner, batches, [{"last_hidden_state": eager}], Gate(atol=1e-5),
                              skips_padding=True).passed


def test_declared_token_outputs_keep_per_sample_outputs_whole() -> None:
    """A per-sample output whose width happens to equal the sequence length (logits over 10 labels at
    sequence length 10) is compared whole when the artifact declares its token-level outputs."""
    batches = _batches()  # 3x10, row 1 has 4 padding positions
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(3, 10, 4)).astype(np.float32)
    logits = rng.normal(size=(3, 10)).astype(np.float32)
    wrong = logits.copy()
    wrong[1, 8] += 1.0  # a "padding" column of the mask, but a real label of a per-sample output

    def runner(inputs):
        return {"last_hidden_state": np.where(inputs["attention_mask"][..., None] == 1, hidden, 7.0),
                "logits": wrong}

    reference = [{"last_hidden_state": hidden, "logits": logits}]
    declared = check_artifact("x", runner, batches, reference, Gate(atol=1e-5), skips_padding=True,
                              token_outputs=["last_hidden_state"])
    assert not declared.passed
    assert all("'logits'" in f for f in declared.failures)  # the hidden state's padding is excluded...
    wrong[1, 8] -= 1.0
    assert check_artifact("x", runner, batches, reference, Gate(atol=1e-5), skips_padding=True,
                          token_outputs=["last_hidden_state"]).passed  # ...and only the logits error failed it

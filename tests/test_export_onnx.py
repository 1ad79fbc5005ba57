"""ONNX export through tf2onnx: names, dynamic batch, ONNX Runtime parity for every family."""

from __future__ import annotations

import gc
import importlib
import os

import numpy as np
import onnx as onnx_lib
import onnxruntime as ort
import pytest
from export_checks import FAMILIES, family_model, random_crops, tiny_model

from keras_pose.export import ExportParityError, onnx


def dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def run(path, crops) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"image": crops})))


def test_names_dynamic_batch_and_parity(tmp_path):
    from tf2onnx import optimizer

    passes = dict(optimizer._optimizers)
    model = tiny_model()
    path = onnx(model, tmp_path / "tiny.onnx")
    # The conversion's garbage-collection guard is undone: tf2onnx's passes and gc as before.
    assert optimizer._optimizers == passes and gc.get_freeze_count() == 0
    graph = onnx_lib.load(path).graph
    assert [(v.name, dims(v)) for v in graph.input] == [("image", ["batch", 64, 48, 3])]
    assert [(v.name, dims(v)) for v in graph.output] == [
        ("aux", ["batch", 16, 12, 5]),
        ("heatmaps", ["batch", 16, 12, 5]),
    ]
    for batch in (1, 3):
        crops = random_crops(model, batch=batch, seed=batch)
        got = run(path, crops)
        expected = model(crops, training=False)
        for name in ("aux", "heatmaps"):
            assert got[name].shape == (batch, 16, 12, 5)
            assert np.abs(got[name] - np.asarray(expected[name])).max() / 255.0 < 1e-4


def test_final_output_only_and_failed_check_writes_nothing(tmp_path, monkeypatch):
    model = tiny_model()
    path = onnx(model, tmp_path / "final.onnx", outputs="final")
    assert [v.name for v in onnx_lib.load(path).graph.output] == ["heatmaps"]

    module = importlib.import_module("keras_pose.export.onnx")

    real = module.keras_outputs
    monkeypatch.setattr(
        module, "keras_outputs", lambda *a: {k: v + 1.0 for k, v in real(*a).items()}
    )
    with pytest.raises(ExportParityError, match="ONNX export"):
        onnx(model, tmp_path / "bad.onnx")
    assert sorted(os.listdir(tmp_path)) == ["final.onnx"]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_onnx_parity(tmp_path, family):
    model = family_model(family)
    path = onnx(model, tmp_path / f"{family}.onnx")
    crops = random_crops(model, batch=2, seed=1)
    got = run(path, crops)
    expected = model(crops, training=False)
    assert list(got) == model.spec.output_names
    for output in model.spec.outputs:
        reference = np.asarray(expected[output.name])
        scale = max(output.codec.peak, np.abs(reference).max())
        assert np.abs(got[output.name] - reference).max() / scale < 1e-4, output.name

"""Checks the model battery (``test_models.py``) and the family tests run: output names and
shapes, `.keras` round trip, jax."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

from keras_pose.models import MODELS
from keras_pose.models.base import PoseModel

# the smallest inputs and family arguments with which each registry name builds quickly
SMALL_INPUT = {"cpm": (32, 32, 3), "hourglass": (64, 64, 3), "hourglass52": (128, 128, 3),
               "tiny": (16, 16, 3)}
SMALL_ARGS = {"cpm": {"num_stages": 2}, "hourglass": {"num_stacks": 1, "num_features": 16}}


def build_small(name: str, num_keypoints: int = 3, **kwargs) -> PoseModel:
    """The registry's ``name`` at a small input (64x64 unless ``SMALL_INPUT`` says otherwise),
    uncompiled."""
    arguments = {"input_shape": SMALL_INPUT.get(name, (64, 64, 3)), **SMALL_ARGS.get(name, {}),
                 **kwargs}
    return MODELS[name](num_keypoints=num_keypoints, compile=False, **arguments)


def random_crops(model: PoseModel, batch: int = 2, seed: int = 0) -> np.ndarray:
    """A batch of random 0..255 crops of the model's input size."""
    h, w = model.spec.input_size
    return np.random.default_rng(seed).uniform(0, 255, (batch, h, w, 3)).astype("float32")


def check_output_structure(model: PoseModel, expected: dict[str, tuple[int, int]]) -> None:
    """The graph's outputs are a dict in spec order with the expected (h, w) and K channels,
    each the output of the layer that carries its name (no forward pass)."""
    assert list(expected) == model.spec.output_names == list(model.output)
    for name, (h, w) in expected.items():
        assert tuple(model.output[name].shape) == (None, h, w, model.spec.num_keypoints), name
        assert model.get_layer(name).output is model.output[name], (
            f"output {name!r} is not the output of the layer named {name!r}"
        )


def check_outputs(model: PoseModel, expected: dict[str, tuple[int, int]]) -> dict:
    """:func:`check_output_structure`, and a forward pass returns that dict and those shapes."""
    check_output_structure(model, expected)
    x = random_crops(model)
    outputs = model(x, training=False)
    assert list(outputs) == model.spec.output_names
    for name, (h, w) in expected.items():
        assert tuple(outputs[name].shape) == (len(x), h, w, model.spec.num_keypoints), name
    return outputs


def check_keras_roundtrip(model: PoseModel, tmp_path) -> str:
    """`.keras` save -> load gives the same class, spec and identical outputs."""
    path = os.path.join(tmp_path, "model.keras")
    x = random_crops(model)
    before = model.predict(x, verbose=0)
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.spec == model.spec
    after = loaded.predict(x, verbose=0)
    for name in model.spec.output_names:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    np.save(os.path.join(tmp_path, "x.npy"), x)
    np.savez(os.path.join(tmp_path, "y.npz"), **before)
    return path


def check_config_roundtrip(model: PoseModel) -> None:
    """``from_config(get_config())`` with the weights copied gives the same class, spec and
    outputs (the ``.keras`` round trip without writing the weights file)."""
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config() and clone.spec == model.spec
    clone.set_weights(model.get_weights())
    x = random_crops(model, batch=1)
    before, after = model.predict(x, verbose=0), clone.predict(x, verbose=0)
    for name in model.spec.output_names:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def check_jax_backend(keras_path: str, tmp_path, module: str, atol: float = 1e-4) -> None:
    """The `.keras` file saved under TensorFlow loads and runs under KERAS_BACKEND=jax.

    ``module`` is the family's module (e.g. ``"keras_pose.models.cpn"``), imported to register it.
    """
    script = textwrap.dedent(
        f"""
        import numpy as np, keras
        assert keras.backend.backend() == "jax"
        import {module}  # registers the classes
        model = keras.saving.load_model({keras_path!r})
        x = np.load({os.path.join(tmp_path, "x.npy")!r})
        expected = np.load({os.path.join(tmp_path, "y.npz")!r})
        out = model.predict(x, verbose=0)
        for name in expected.files:
            scale = max(1.0, float(np.abs(expected[name]).max()))
            err = float(np.abs(np.asarray(out[name]) - expected[name]).max()) / scale
            assert err < {atol}, (name, err)
        print("jax ok")
        """
    )
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0 and "jax ok" in result.stdout, result.stderr[-3000:]


def trainable_params(model: keras.Model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def all_params(model: keras.Model) -> int:
    return int(sum(np.prod(v.shape) for v in model.weights))

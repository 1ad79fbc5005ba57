"""The model battery: the same checks for every name of the registry (as Keras' application
``MODEL_LIST`` and keras-hub's ``run_*_test``), at small input sizes.

* every registry name: graph outputs in spec order, shaped by the spec, each the output of the
  layer that carries its name; the profile (optimizer, schedule, augmentation, evaluation protocol)
  and the README's tables agree (:func:`test_profiles.check_profile`);
* one registry name per family (the multi-stage names differ only in their stage count, and
  ``tiny`` stands in for RSN): a forward pass, the ``.keras`` round trip (same class, config,
  spec and outputs) and the saved file run under ``KERAS_BACKEND=jax`` (Hourglass-52: the
  config round trip in memory).

The family files (``test_cpn.py`` ...) keep only what is unique to a family.
"""

from __future__ import annotations

import keras
import pytest
from model_checks import (
    build_small,
    check_config_roundtrip,
    check_jax_backend,
    check_keras_roundtrip,
    check_output_structure,
    check_outputs,
)
from test_profiles import check_profile

from keras_pose.models import FAMILIES, MODELS

# the cheapest registry name of each family, with family arguments that keep it small
ROUND_TRIP_CASES = {
    "cpn50": {"backbone": "resnet18", "input_shape": (64, 48, 3)},
    "mspn50": {},
    "rsn18": {"use_prm": True, "bn_epsilon": 1e-3, "bn_momentum": 0.99},
    "cpm": {},
    "hourglass": {},
}
# 95M weights: a 380 MB .keras file and its jax run would dominate CI, so Hourglass-52 checks
# its config round trip in memory (its layers run under jax in the CPN and hourglass cases)
CONFIG_ONLY_CASES = ("hourglass52",)


def test_round_trip_cases_cover_every_family():
    names = {*ROUND_TRIP_CASES, *CONFIG_ONLY_CASES}
    assert {FAMILIES[name] for name in names} == set(FAMILIES.values())
    assert names <= set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_registry_model_outputs_and_profile(name):
    model = build_small(name)
    expected = {output: model.spec.heatmap_size(output) for output in model.spec.output_names}
    assert model.spec.final_output == "heatmaps" == model.spec.output_names[-1]
    check_output_structure(model, expected)
    check_profile(name, model)


@pytest.mark.parametrize("name", sorted(ROUND_TRIP_CASES))
def test_forward_keras_round_trip_and_jax_backend(name, tmp_path):
    model = build_small(name, **ROUND_TRIP_CASES[name])
    check_outputs(model, {o: model.spec.heatmap_size(o) for o in model.spec.output_names})
    path = check_keras_roundtrip(model, tmp_path)
    assert keras.saving.load_model(path).get_config() == model.get_config()
    check_jax_backend(path, tmp_path, module="keras_pose.models")


@pytest.mark.parametrize("name", CONFIG_ONLY_CASES)
def test_forward_and_config_round_trip(name):
    model = build_small(name)
    check_outputs(model, {o: model.spec.heatmap_size(o) for o in model.spec.output_names})
    check_config_roundtrip(model)

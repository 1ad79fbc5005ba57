"""Every registry name trains, augments and evaluates as its family's profile says, and the
README's tables say the same (parsed from README.md, not regenerated). ``check_profile`` runs
for every registry name in the model battery (``test_models.py``)."""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
import re

import keras
import pytest
from model_checks import build_small

import keras_pose
from keras_pose.data.transforms import augment_config_for, border_value_for
from keras_pose.evaluation import default_keypoint_threshold, default_nms
from keras_pose.models import FAMILIES, MODELS
from keras_pose.profiles import (
    PROFILES,
    describe_augmentation,
    describe_border,
    describe_rescoring,
    profile_for,
)
from keras_pose.training import WarmupLinearDecay, WarmupMultiStep, make_optimizer

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SCHEDULE_TYPES = {"constant": float, "warmup_linear": WarmupLinearDecay,
                  "multistep": WarmupMultiStep}


def readme_table(header_start: str) -> list[list[str]]:
    """The rows (cells stripped) of the README table whose header begins ``header_start``."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def family_rows() -> dict[str, list[str]]:
    return {row[0]: row for row in readme_table("| family | models | optimizer |")}


def test_every_registry_name_has_a_profile_listing_it():
    listed = sorted(name for profile in PROFILES.values() for name in profile.model_names)
    assert listed == sorted(MODELS)
    assert set(FAMILIES.values()) == set(PROFILES)


def check_profile(name: str, model: keras_pose.PoseModel) -> None:
    """``model`` (built by the registry's ``name``) trains, augments and evaluates as its
    family's profile says, and the README's family table says the same."""
    spec, profile = model.spec, profile_for(FAMILIES[name])
    row = family_rows()[spec.family]
    assert spec.family == profile.family and name in row[1].split(", ")

    # codec conventions: every output's codec, the test-time box, the channel order, flip
    assert {o.codec.type for o in spec.outputs} == {profile.codec}
    assert spec.box_extension == profile.box_extension
    if model.variant == "original":
        assert spec.channel_order == profile.channel_order
        assert spec.flip_test == profile.evaluation.flip_test
        assert row[8] == ("yes" if spec.flip_test else "no")

    # optimizer and schedule: what compile() and the trainer build
    optimizer = model.default_optimizer()
    assert type(optimizer).__name__ == profile.training.optimizer
    assert row[2] == f"{type(optimizer).__name__} {float(optimizer.learning_rate):g}"
    for option, value in profile.training.optimizer_options.items():
        assert getattr(optimizer, option) == pytest.approx(value), option
    scheduled = make_optimizer(model, total_steps=1000, global_batch=32)
    assert type(scheduled) is type(optimizer)
    schedule = scheduled._learning_rate  # the schedule object, or a variable for a constant
    expected = SCHEDULE_TYPES[row[3]]
    if expected is float:
        assert row[3] == profile.training.schedule == "constant"
        assert not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    else:
        assert isinstance(schedule, expected) and row[3] == profile.training.schedule

    # augmentation and border: what the data pipeline draws
    augment = augment_config_for(spec)
    assert row[4] == describe_augmentation(dataclasses.asdict(augment))
    assert row[5] == describe_border(border_value_for(spec))

    # evaluation protocol: what evaluate_coco does by default
    assert row[6] == default_nms(spec.family) == profile.evaluation.nms
    assert row[7] == describe_rescoring(default_keypoint_threshold(spec.family))


def test_hourglass52_trains_with_mmposes_recipe_not_newells():
    recipe = profile_for("hourglass52").training
    assert (recipe.optimizer, recipe.learning_rate, recipe.schedule) == ("Adam", 5e-4, "multistep")
    assert recipe.milestones == (170 / 210, 200 / 210) and recipe.decay == 0.1
    assert recipe.warmup_factor == 0.001 and 0 < recipe.warmup < 0.01
    model = build_small("hourglass52")
    scheduled = make_optimizer(model, total_steps=2100, global_batch=256)
    schedule = scheduled._learning_rate
    assert isinstance(scheduled, keras.optimizers.Adam)
    assert schedule.boundaries == [1700, 2000] and schedule.warmup_steps > 0


def test_readme_training_table_lists_every_published_model_with_its_recipe():
    rows = {row[0]: row for row in readme_table("| model | input | optimizer and schedule")}
    published = {name: (profile, result) for profile in PROFILES.values()
                 for name, result in profile.published.items()}
    assert sorted(rows) == sorted(published)
    for name, (profile, result) in published.items():
        row = rows[name]
        assert row[1] == "x".join(str(v) for v in result.input_size)
        assert row[2] == profile.training.description
        assert row[2].startswith(profile.training.optimizer), name
        ap = "-" if result.ap is None else f"{result.ap:.1f}"
        assert row[4].startswith(f"{ap} ("), name


def test_readme_models_table_names_each_registry_builder():
    for row in readme_table("| name | builder |"):
        name = row[0].split("`")[1]
        call = re.fullmatch(r"`(\w+)\((.*)\)`", row[1])
        assert call, row[1]
        builder = getattr(keras_pose, call.group(1))
        registered = MODELS[name]
        assert getattr(registered, "func", registered) is builder, name
        stages = re.search(r"num_stages=(\d)", call.group(2))
        if stages:
            assert registered.keywords["num_stages"] == int(stages.group(1)), name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_builder_has_the_one_keyword_signature(name):
    parameters = list(inspect.signature(MODELS[name]).parameters.values())
    assert [p.name for p in parameters[:5]] == [
        "input_shape", "num_keypoints", "weights", "compile", "variant"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters if p.name != "kwargs")
    assert parameters[2].default is None and parameters[3].default is True

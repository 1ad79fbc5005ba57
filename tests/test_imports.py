"""The lazy top-level package: the numpy parts import without TensorFlow or Keras, and every
subpackage the README names is reachable after a plain ``import keras_pose``."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]

BLOCK_FRAMEWORKS = """
import sys

BLOCKED = ("tensorflow", "keras", "jax", "torch", "tf_keras")


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked import of {name}")
        return None


sys.meta_path.insert(0, Blocker())
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_numpy_parts_import_and_run_without_tensorflow_or_keras():
    code = BLOCK_FRAMEWORKS + textwrap.dedent("""
        import numpy as np
        import keras_pose
        from keras_pose import codecs, data, evaluation, profiles, spec
        from keras_pose.data import transforms

        pose_spec = spec.PoseSpec(
            family="rsn", input_size=(64, 48), num_keypoints=3, channel_order="BGR",
            outputs=spec.megvii_outputs(["heatmaps"], [7], ["ohkm"], [1.0]))
        config = data.augment_config_for(pose_spec)
        assert config.half_body_prob == profiles.RSN.augmentation["half_body_prob"]
        codec = codecs.codec_from_spec(pose_spec.final.codec, (64, 48), 4)
        heatmaps = codec.encode(np.array([[10.0, 20.0]] * 3), np.ones(3, bool))
        keypoints, _ = codec.decode(heatmaps[None])
        assert np.abs(keypoints[0] - [10.0, 20.0]).max() < 4
        assert evaluation.default_nms("rsn") == "none"
        assert evaluation.oks_iou is not None and keras_pose.data.synthetic.make_coco_dataset
        loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        assert not loaded, loaded
        print("numpy parts ok")
    """)
    result = run_python(code)
    assert result.returncode == 0 and "numpy parts ok" in result.stdout, result.stderr[-3000:]


def readme_packages() -> list[str]:
    """``keras_pose.x`` of every ``keras_pose/x/`` or ``keras_pose/x.py`` in the README's
    package table, and every ``keras_pose.a.b`` name it mentions."""
    text = (ROOT / "README.md").read_text()
    names = {f"keras_pose.{m}" for m in re.findall(r"`keras_pose/(\w+)(?:/|\.py)`", text)}
    names |= set(re.findall(r"`(keras_pose(?:\.\w+)+)", text))
    return sorted(names)


def test_every_package_the_readme_names_is_reachable_after_import_keras_pose():
    names = readme_packages()
    assert {"keras_pose.data", "keras_pose.export", "keras_pose.data.synthetic"} <= set(names)
    code = textwrap.dedent(f"""
        import functools
        import keras_pose
        for dotted in {names!r}:
            functools.reduce(getattr, dotted.split(".")[1:], keras_pose)
        keras_pose.data.synthetic.make_coco_dataset
        print("reachable ok")
    """)
    result = run_python(code)
    assert result.returncode == 0 and "reachable ok" in result.stdout, result.stderr[-3000:]

"""recipes/infer.py end to end on a synthetic video and on images: drawn video, JSON Lines with
stable ids, drawn image folder, --help examples; an interrupted run leaves nothing behind."""

from __future__ import annotations

import importlib.util
import json
import os

import cv2
import keras
import numpy as np
import pytest

from keras_pose.data.synthetic.video import render_video
from keras_pose.models.tiny import TinyPoseModel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def recipe():
    spec = importlib.util.spec_from_file_location(
        "infer", os.path.join(REPO, "recipes", "infer.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    video = render_video(6, (240, 320), 2, velocities=[(-3, 0), (3, 0)], seed=1)
    path = str(root / "walk.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (320, 240))
    for frame in video.frames:
        writer.write(frame)
    writer.release()
    records = [{"image_id": t, "category_id": 1, "bbox": video.boxes[t, p].tolist(), "score": 0.9}
               for t in range(6) for p in range(2)]
    (root / "dets.json").write_text(json.dumps(records))
    keras.utils.set_random_seed(5)
    TinyPoseModel("rsn", (64, 48, 3), 17, width=8).save(root / "tiny.keras")
    return root, video


def test_video_to_drawn_video_and_json_lines(setup, capsys):
    root, video = setup
    out, lines = root / "walk_pose.mp4", root / "walk_pose.jsonl"
    code = recipe().main([str(root / "walk.avi"), "--pose", str(root / "tiny.keras"),
                          "--detector", str(root / "dets.json"), "--out", str(out),
                          "--json", str(lines), "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert summary["frames"] == 6 and summary["skipped"] == 0 and summary["people"] == 12
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    ok, first = capture.read()
    assert ok and first.shape == (240, 320, 3)
    assert np.abs(first.astype(int) - video.frames[0]).mean() > 0.5  # something was drawn
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(6))
    assert all(len(r["people"]) == 2 and len(r["people"][0]["keypoints"]) == 17 for r in records)
    by_box_x = [sorted((p["box"][0], p["id"]) for p in r["people"]) for r in records]
    assert all([i for _, i in row] == [i for _, i in by_box_x[0]] for row in by_box_x)
    assert not [f for f in os.listdir(root) if f.startswith(".")]  # no temporary files left


def test_images_to_a_folder_and_help(setup, tmp_path, capsys):
    root, video = setup
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), video.frames[0])
    cv2.imwrite(str(photos / "b.jpg"), video.frames[1])
    code = recipe().main([str(photos), "--pose", str(root / "tiny.keras"),
                          "--out", str(tmp_path / "drawn"), "--quiet", "--no-flip"])
    assert code == 0 and sorted(os.listdir(tmp_path / "drawn")) == ["a.png", "b.png"]
    with pytest.raises(SystemExit):
        recipe().main(["--help"])
    assert "examples:" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no such file"):
        recipe().main([str(photos), "--pose", "no_model_here"])


def test_a_failed_run_keeps_the_previous_outputs(setup, tmp_path, monkeypatch):
    root, _ = setup
    lines = tmp_path / "out.jsonl"
    lines.write_text("previous run\n")
    module = recipe()
    from keras_pose.inference import inferencer

    def broken(self, frame):
        raise RuntimeError("detector crashed")

    monkeypatch.setattr(inferencer.PoseInferencer, "detect", broken)
    with pytest.raises(RuntimeError, match="detector crashed"):
        module.main([str(root / "walk.avi"), "--pose", str(root / "tiny.keras"),
                     "--json", str(lines), "--quiet"])
    assert lines.read_text() == "previous run\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]

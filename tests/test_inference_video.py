"""PoseInferencer on a synthetic video of three moving people (keras_pose.data.synthetic.video):
stable track ids, keypoints that follow the people, drawn video and JSON Lines out, broken
frames skipped and counted; the tracker's new/lost tracks; One-Euro smoothing.

The detector is the ground truth's boxes (a COCO detection-results json keyed by frame index,
in shuffled order); the pose model is an untrained TinyPoseModel: its crops move with the people,
so its keypoints do too (what the follow test checks), while the id tests track on OKS of those
keypoints and on box IoU.
"""

from __future__ import annotations

import json

import cv2
import keras
import numpy as np
import pytest

from keras_pose.data.synthetic.video import render_video
from keras_pose.inference import PoseInferencer, Tracker
from keras_pose.inference.detectors import xyxy_to_xywh
from keras_pose.inference.smoothing import OneEuroFilter, PoseSmoother
from keras_pose.inference.sources import VideoSource, open_source
from keras_pose.models.tiny import TinyPoseModel

NUM_FRAMES = 10


@pytest.fixture(scope="module")
def video():
    # away from the image borders (clipped boxes would change the crops' shape), no crossing
    return render_video(NUM_FRAMES, (240, 320), 3, velocities=[(-3, 0), (3, -1), (-3, 0)], seed=0)


@pytest.fixture(scope="module")
def video_file(video, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("video") / "walk.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for frame in video.frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def detections(video, tmp_path_factory):
    """Ground-truth boxes as COCO detection results (image id = frame index), shuffled."""
    rng = np.random.default_rng(0)
    records = []
    for t in range(NUM_FRAMES):
        for person in rng.permutation(video.num_people):
            x, y, w, h = video.boxes[t, person]
            records.append({"image_id": t, "category_id": 1, "bbox": [x, y, w, h],
                            "score": 0.9 - 0.1 * person})
    path = tmp_path_factory.mktemp("dets") / "gt_boxes.json"
    path.write_text(json.dumps(records))
    return str(path)


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(11)
    return TinyPoseModel("rsn", (64, 48, 3), 17, width=8)


def identities(result, video) -> list[int]:
    """The ground-truth person of each result box (boxes equal the ground truth's)."""
    truth = video.boxes[result.frame.index].copy()
    truth[:, 2:] += truth[:, :2]
    return [int(np.argmin(np.abs(truth - box).sum(axis=1))) for box in result.boxes]


@pytest.mark.parametrize("tracking", ["oks", "iou"])
def test_ids_stay_with_their_people(tiny, video, video_file, detections, tracking):
    inferencer = PoseInferencer(tiny, detections, tracking=tracking, batch_size=8)
    results = list(inferencer(video_file))
    assert [r.frame.index for r in results] == list(range(NUM_FRAMES))
    assert inferencer.stats.frames == NUM_FRAMES and inferencer.stats.skipped == 0
    id_of_person: dict[int, int] = {}
    for result in results:
        assert result.keypoints.shape == (3, 17, 3)
        for person, track in zip(identities(result, video), result.track_ids.tolist()):
            assert id_of_person.setdefault(person, track) == track, (result.frame.index, tracking)
    assert sorted(id_of_person.values()) == [0, 1, 2]


def test_keypoints_follow_the_people(tiny, video, video_file, detections):
    inferencer = PoseInferencer(tiny, detections)
    results = list(inferencer(video_file))
    start = {p: results[0].keypoints[i, :, :2] for i, p in enumerate(identities(results[0], video))}
    for result in results[1:]:
        matrices = inferencer.predictor.crops(result.frame.image, xyxy_to_xywh(result.boxes))[1]
        cells = inferencer.spec.final.stride / matrices[:, 0, 0]  # a heatmap cell in image px
        for i, person in enumerate(identities(result, video)):
            shift = video.boxes[result.frame.index, person, :2] - video.boxes[0, person, :2]
            moved = np.median(result.keypoints[i, :, :2] - start[person], axis=0)
            # within one heatmap cell (in image pixels) of the person's move of up to 27 px
            assert np.abs(moved - shift).max() <= cells[i], (
                result.frame.index, person, moved, shift
            )


def test_broken_video_frames_are_skipped_and_counted(tiny, video_file, detections, monkeypatch):
    source = VideoSource(video_file)
    real_read = source.capture.read
    calls = {"n": 0}

    def flaky_read():
        calls["n"] += 1
        ok, image = real_read()
        return (False, None) if calls["n"] in (3, 4) else (ok, image)

    monkeypatch.setattr(source, "capture", type("Capture", (), {
        "read": staticmethod(flaky_read), "release": source.capture.release})())
    inferencer = PoseInferencer(tiny, detections)
    results = list(inferencer(source))
    assert [r.frame.index for r in results] == [0, 1, 4, 5, 6, 7, 8, 9]
    assert inferencer.stats.skipped == 2 and inferencer.stats.frames == NUM_FRAMES - 2


def test_image_folder_with_a_corrupt_file(tiny, video, tmp_path):
    for t in (0, 1):
        cv2.imwrite(str(tmp_path / f"frame{t}.png"), video.frames[t])
    (tmp_path / "frame2.png").write_bytes(b"not a png")
    inferencer = PoseInferencer(tiny, None, tracking="oks")
    results = list(inferencer(str(tmp_path)))
    assert [r.frame.name.rsplit("/", 1)[-1] for r in results] == ["frame0.png", "frame1.png"]
    assert inferencer.stats.skipped == 1
    assert all(r.track_ids is None for r in results)  # images are not tracked
    np.testing.assert_allclose(results[0].boxes, [[0, 0, 320, 240]])  # no detector: whole image


def test_tracker_starts_and_ends_tracks():
    tracker = Tracker("iou", max_lost=2)
    a, b, c = [0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10]
    pose = np.zeros((17, 3))
    assert tracker.update([a, b], [pose, pose]).tolist() == [0, 1]
    assert tracker.update([b, a], [pose, pose]).tolist() == [1, 0]  # order does not matter
    assert tracker.update([a], [pose]).tolist() == [0]  # b lost once
    assert tracker.update([a], [pose]).tolist() == [0]  # twice
    assert tracker.update([a, b], [pose, pose]).tolist() == [0, 1]  # back within max_lost
    for _ in range(3):
        tracker.update([a], [pose])
    assert tracker.ended == [1]
    assert tracker.update([a, b, c], [pose] * 3).tolist() == [0, 2, 3]  # b is new now


def test_tracker_on_oks_follows_poses_not_boxes():
    rng = np.random.default_rng(1)
    pose_a = np.concatenate([rng.uniform(0, 50, (17, 2)), np.ones((17, 1))], axis=1)
    pose_b = pose_a + [100, 0, 0]
    box = [0, 0, 150, 50]  # the same box for both: only the keypoints tell them apart
    tracker = Tracker("oks")
    assert tracker.update([box, box], [pose_a, pose_b]).tolist() == [0, 1]
    assert tracker.update([box, box], [pose_b + [2, 1, 0], pose_a - [1, 2, 0]]).tolist() == [1, 0]
    with pytest.raises(ValueError, match="metric"):
        Tracker("distance")


def test_one_euro_smooths_jitter_and_follows_moves():
    rng = np.random.default_rng(2)
    times = np.arange(60) / 30.0
    noisy = 100.0 + rng.normal(0, 2.0, 60)
    still = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    smoothed = np.array([still(np.array([v]), t)[0] for v, t in zip(noisy, times)])
    assert smoothed[20:].std() < 0.5 * noisy[20:].std()
    ramp = 300.0 * times  # 300 px/s
    moving = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    followed = np.array([moving(np.array([v]), t)[0] for v, t in zip(ramp, times)])
    assert np.abs(followed[-10:] - ramp[-10:]).max() < 10.0  # a fraction of a frame's move
    smoother = PoseSmoother()
    first = smoother(np.array([4]), np.ones((1, 17, 3)), 0.0)
    np.testing.assert_allclose(first, 1.0)
    smoother(np.array([5]), np.ones((1, 17, 3)), 0.1)
    assert set(smoother.filters) == {5}  # the filters of ended tracks are dropped


def test_sources_name_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        open_source(str(tmp_path / "nowhere.mp4"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="notes.txt"):
        open_source(str(tmp_path / "notes.txt"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        open_source(str(empty))

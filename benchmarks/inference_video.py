"""End-to-end frames/s of ``PoseInferencer`` on a 640x480 video with 3 people, per pose form.

    python benchmarks/inference_video.py [--model rsn18] [--input-size 256 192] [--frames 24]
        [--detector DET] [--threads 2] [--markdown FILE]

One model (random weights: speed does not depend on them) is exported to every form (SavedModel,
LiteRT fp32 and int8, ONNX; int8 calibrated on 16 random crops), a synthetic 640x480 video of 3
moving people (``keras_pose.data.synthetic.video``, MJPG ``.avi``) is rendered, and each form
runs the whole loop: read frame, detect, crop, pose model (flip test per the spec: 2 crops a
person), decode, back-project, OKS tracking. The detector is the video's ground-truth boxes (a
COCO results ``.json``: about no time) unless ``--detector`` names a detector file; its time is
reported apart. Each form first runs 3 frames to warm up, then the timed pass over all frames.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FORMS = ("Keras", "SavedModel", "LiteRT fp32", "LiteRT int8", "ONNX")


def export_forms(model, root: str, names: Sequence[str]) -> dict[str, object]:
    """Each form in ``names``: the model itself, or the path of its export."""
    import numpy as np

    from keras_pose.export import litert, onnx, saved_model

    crops = np.random.default_rng(0).uniform(0, 255, (16, *model.spec.input_size, 3))
    writers = {
        "Keras": lambda: model,
        "SavedModel": lambda: saved_model(model, os.path.join(root, "savedmodel")),
        "LiteRT fp32": lambda: litert(model, os.path.join(root, "model.tflite")),
        "LiteRT int8": lambda: litert(model, os.path.join(root, "model-int8.tflite"), "int8",
                                      crops.astype(np.float32)),
        "ONNX": lambda: onnx(model, os.path.join(root, "model.onnx"), outputs="final"),
    }
    return {name: writers[name]() for name in names}


def write_video(root: str, frames: int) -> tuple[str, str]:
    """The synthetic video (.avi) and its ground-truth boxes as COCO detection results."""
    import cv2

    from keras_pose.data.synthetic.video import render_video

    video = render_video(frames, (480, 640), 3, velocities=[(-2, 0), (2, 0), (-2, 1)], seed=0)
    path = os.path.join(root, "walk.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (640, 480))
    for frame in video.frames:
        writer.write(frame)
    writer.release()
    records = [{"image_id": t, "category_id": 1, "bbox": video.boxes[t, p].tolist(), "score": 0.9}
               for t in range(frames) for p in range(video.num_people)]
    boxes = os.path.join(root, "boxes.json")
    with open(boxes, "w") as f:
        json.dump(records, f)
    return path, boxes


def measure(form, video: str, detector: str, threads: int) -> dict[str, float]:
    from keras_pose.inference import PoseInferencer
    from keras_pose.inference.sources import ImageSource, open_source

    inferencer = PoseInferencer(form, detector, num_threads=threads, batch_size=8)
    warm = [f.image for f, _ in zip(open_source(video), range(3))]
    list(inferencer(ImageSource(warm)))
    list(inferencer(video))
    stats = inferencer.stats
    return {
        "frames": stats.frames,
        "people": stats.people,
        "fps": stats.frames_per_second,
        "detector_ms": 1000 * stats.detector_seconds / max(stats.frames, 1),
        "pose_ms": 1000 * (stats.total_seconds - stats.detector_seconds) / max(stats.frames, 1),
    }


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def table(rows: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    lines = [
        f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; {args.model} {args.input_size[0]}x"
        f"{args.input_size[1]}, {args.frames} frames of 640x480, 3 people, {args.threads} threads.",
        "",
        "| pose form | frames/s (end to end) | pose ms/frame | detector ms/frame | people |",
        "| --- | --- | --- | --- | --- |",
    ]
    for form, row in rows.items():
        lines.append(f"| {form} | {row['fps']:.2f} | {row['pose_ms']:.0f} | "
                     f"{row['detector_ms']:.1f} | {row['people']} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rsn18")
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 192))
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--detector", help="a detector file (default: ground-truth boxes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    parser.add_argument("--markdown", help="write the table to this file")
    args = parser.parse_args(argv)

    import keras

    from keras_pose.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model(args.model, input_shape=(*args.input_size, 3))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="keras_pose_bench_") as root:
        video, boxes = write_video(root, args.frames)
        forms = export_forms(model, root, args.forms)
        for name in args.forms:
            rows[name] = measure(forms[name], video, args.detector or boxes, args.threads)
            print(name, json.dumps(rows[name]), flush=True)
    text = table(rows, args)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

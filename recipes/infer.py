"""Human poses on your photos, videos and camera: person detector + keras-pose model, one command.

    python recipes/infer.py SOURCE --pose MODEL [--detector DET] [--out out.mp4|DIR|out.png]
        [--json out.jsonl] [--show] [--tracking oks|iou|none] [--smooth] [--no-flip-test]

SOURCE is an image, a folder of images, a video file or a camera index (``0``). MODEL is any form
of a keras-pose model: a ``.keras`` file, a SavedModel folder, a ``.tflite`` or an ``.onnx`` file
written by ``recipes/export.py`` (they carry their spec), or an architecture name with
``--weights``. DET is a person detector you have: an ``.onnx`` export (MMDeploy RTMDet/YOLOX, or
``yolo export format=onnx``), a TensorFlow Object-Detection-API SavedModel folder or a COCO
detection-results ``.json``; without it the whole image is one person. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXAMPLES = """examples:
  # a video, with an RTMDet detector exported by MMDeploy and a converted MMPose RSN-50
  python recipes/infer.py walk.mp4 --pose rsn50.keras --detector rtmdet-m.onnx \\
      --out walk_pose.mp4 --json walk_pose.jsonl
  # a folder of photos with a LiteRT model and an Ultralytics YOLO detector
  python recipes/infer.py photos/ --pose rsn18.tflite --detector yolov8n.onnx --out drawn/
  # the webcam, smoothed, shown in a window (needs opencv-python, not -headless)
  python recipes/infer.py 0 --pose savedmodels/rsn18/1 --detector yolov8n.onnx --smooth --show
  # one image whose person boxes are in a COCO detection-results file
  python recipes/infer.py 000000397133.jpg --pose cpn50.onnx --detector dets.json --out pose.png
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Detect people, estimate and track their poses in images, videos or a "
                    "camera; draw them and write JSON Lines.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="image, folder of images, video file or camera index")
    parser.add_argument("--pose", required=True, metavar="MODEL",
                        help=".keras, SavedModel folder, .tflite, .onnx, or an architecture name")
    parser.add_argument("--weights", metavar="FILE", help="weights for an architecture name")
    parser.add_argument("--detector", metavar="DET",
                        help="person detector: .onnx, SavedModel folder or COCO results .json "
                             "(default: the whole image is one person)")
    parser.add_argument("--out", metavar="PATH",
                        help="drawn output: a video file (.mp4/.avi) for videos, a folder or a "
                             ".png for images")
    parser.add_argument("--json", metavar="FILE", help="JSON Lines output, one line per frame")
    parser.add_argument("--show", action="store_true", help="show the drawn frames in a window")
    parser.add_argument("--tracking", choices=("oks", "iou", "none"), default="oks",
                        help="track people in videos by keypoint OKS or box IoU (default oks)")
    parser.add_argument("--smooth", action="store_true",
                        help="One-Euro smoothing of tracked keypoints")
    parser.add_argument("--no-flip-test", "--no-flip", dest="no_flip", action="store_true",
                        help="skip the flip test (on by default where the spec says)")
    parser.add_argument("--score-threshold", type=float, default=0.3,
                        help="least person score of the detector (default 0.3)")
    parser.add_argument("--keypoint-threshold", type=float, default=0.3,
                        help="draw keypoints scoring at least this (default 0.3)")
    parser.add_argument("--max-people", type=int, help="at most this many people per frame")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--batch-size", type=int, default=16, help="crops per model call")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT/ONNX Runtime threads")
    parser.add_argument("--keypoints-from", metavar="ANN_FILE",
                        help="COCO annotation file of the keypoint set (default: the model's)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def load_pose_argument(args: argparse.Namespace):
    """A path as is; an architecture name built with ``--weights``."""
    if os.path.exists(args.pose):
        return args.pose
    from keras_pose.models import MODELS, load_model

    if args.pose not in MODELS:
        raise SystemExit(f"--pose {args.pose!r}: no such file, and not one of {sorted(MODELS)}")
    if not args.weights:
        print(f"warning: {args.pose} has random weights (no --weights given)", file=sys.stderr)
    return load_model(args.pose, weights=args.weights)


def open_outputs(args: argparse.Namespace, stack: contextlib.ExitStack, kind: str, fps: float):
    """The drawn-output writer (or ``None``) and the JSON Lines writer (or ``None``)."""
    from keras_pose.inference.writers import ImageFolderWriter, JsonLinesWriter, VideoWriter

    drawn = None
    if args.out:
        if kind in ("video", "camera"):
            drawn = stack.enter_context(VideoWriter(args.out, fps))
        elif args.out.lower().endswith(".png"):
            drawn = SinglePng(args.out)
        else:
            drawn = stack.enter_context(ImageFolderWriter(args.out))
    lines = stack.enter_context(JsonLinesWriter(args.json)) if args.json else None
    return drawn, lines


class SinglePng:
    """``--out x.png``: the drawing of the (last) image."""

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, image, name=None, index=None) -> None:
        from keras_pose.inference import save_png

        save_png(self.path, image)


def show(image) -> bool:
    """Show a frame; False when the user pressed q or Esc."""
    import cv2

    try:
        cv2.imshow("keras-pose", image)
        return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)
    except cv2.error as error:
        raise SystemExit(f"--show needs an OpenCV with GUI support (pip install opencv-python): "
                         f"{error}") from error


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from keras_pose.inference import PoseInferencer, draw_people
    from keras_pose.inference.sources import open_source

    dataset_info = None
    if args.keypoints_from:
        from keras_pose.data.coco import read_dataset_info

        dataset_info = read_dataset_info(args.keypoints_from)
    inferencer = PoseInferencer(
        load_pose_argument(args), args.detector, dataset_info=dataset_info,
        flip_test=False if args.no_flip else None, batch_size=args.batch_size,
        score_threshold=args.score_threshold, max_people=args.max_people,
        tracking=None if args.tracking == "none" else args.tracking,
        smoothing=args.smooth, num_threads=args.threads)
    source = open_source(args.source)
    with contextlib.ExitStack() as stack:
        drawn, lines = open_outputs(args, stack, source.kind, source.fps)
        for result in inferencer(source, progress=not args.quiet):
            if lines:
                lines.write(result.to_json())
            if drawn or args.show:
                image = draw_people(result.frame.image, result.boxes, result.keypoints,
                                    result.track_ids, inferencer.dataset_info,
                                    args.keypoint_threshold)
                if drawn:
                    if source.kind in ("video", "camera"):
                        drawn.write(image)
                    else:
                        drawn.write(image, result.frame.name, result.frame.index)
                if args.show and not show(image):
                    break
            if args.max_frames and inferencer.stats.frames >= args.max_frames:
                break
    stats = inferencer.stats
    print(json.dumps({"frames": stats.frames, "skipped": stats.skipped, "people": stats.people,
                      "frames_per_second": round(stats.frames_per_second, 2),
                      "detector_seconds": round(stats.detector_seconds, 3)}))
    for path in (args.out, args.json):
        if path:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

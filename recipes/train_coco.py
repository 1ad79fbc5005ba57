"""Train a keras-pose model on COCO (or, without --data-dir, on the synthetic set), resumably.

    python recipes/train_coco.py                      # the embedded main job (synthetic set)
    python recipes/train_coco.py --model cpn50 --data-dir /data/coco \
        --det-file /data/coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json
    python recipes/train_coco.py --model cpn50 --data-dir /data/coco --resume   # after a kill

``--data-dir`` is a COCO layout: ``annotations/person_keypoints_{train,val}2017.json``,
``train2017/``, ``val2017/``. Without it the synthetic COCO-format set is rendered into
``<out>/synthetic`` (reused when present) and a small RSN-18 is trained, evaluated, exported
and drawn, in 15 minutes (--time-budget: the steps that fit are planned from a few timed ones;
a PLAN line says what the run will do).

Defaults follow the family's profile (``keras_pose.profiles``): optimizer,
learning rate (MSPN/RSN: 5e-4 per 32 crops), schedule shape, and as many training samples as
the original saw. All GPUs are used (MirroredStrategy); with TF_CONFIG naming several machines,
run the same command on each (MultiWorkerMirroredStrategy, --out on a shared file system).
Each run writes its own folder: --out, or a new ``work_dirs/<model>/<date-time>`` (with
``work_dirs/<model>/latest`` pointing at the newest); a folder holding another run is refused
(continue it with --resume, or --overwrite it), and a lock keeps two live runs out of one folder.
A NaN or infinite loss stops the run at once, before anything non-finite is saved.
The output folder holds model.keras, best.keras, checkpoints/, backup/ (for --resume),
logs/ (TensorBoard), summary.json, saved_model/, predictions.png and learning_curve.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from keras_pose.models import MODELS
    from keras_pose.training.plan import PRECISIONS
    from keras_pose.training.recipes import SCHEDULES
    from keras_pose.utils.cli import non_negative_int, positive_float, positive_int

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", help="COCO layout root (default: the synthetic set)")
    data.add_argument("--det-file", help="person detections (COCO results json) for the "
                                         "validation AP (default: ground-truth boxes)")
    data.add_argument("--keypoints-from", metavar="FILE",
                      help="keypoint info file (json: keypoints, flip_pairs, skeleton, sigmas) "
                           "or COCO annotation file giving the keypoint set (default: the "
                           "training annotations' category)")
    data.add_argument("--default-sigma", type=positive_float,
                      help="OKS sigma of every keypoint when the keypoint set has none "
                           "(otherwise such a set is refused)")
    data.add_argument("--train-split", default="train2017")
    data.add_argument("--val-split", default="val2017")
    data.add_argument("--synthetic-train", type=positive_int, help="synthetic training images")
    data.add_argument("--synthetic-val", type=positive_int, help="synthetic validation images")
    data.add_argument("--augment", choices=("family", "short", "none"),
                      help="training augmentation: the family's original, 'short' (the "
                           "family's flips only, for a run of minutes; the main job's default) "
                           "or none (default: family)")
    data.add_argument("--no-augment", action="store_true", help="train on plain crops "
                                                                "(= --augment none)")

    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=sorted(MODELS),
                       help="architecture (default: rsn18 on the synthetic set)")
    model.add_argument("--input-size", type=positive_int, nargs=2, metavar=("H", "W"))
    model.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE",
                       help="extra constructor argument, a json value (e.g. num_stages=3)")
    model.add_argument("--decode-refine", choices=("quarter", "dark", "none"),
                       help="the decode's sub-cell step, kept with the model: the originals' "
                            "quarter step, DARK's Taylor step or none (default: the "
                            "family's quarter step; the main job on CPU: dark)")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=positive_int,
                       help="default: as many samples as the original")
    optim.add_argument("--steps-per-epoch", type=positive_int,
                       help="default: one pass over the people")
    optim.add_argument("--first-epoch-steps", type=positive_int,
                       help="a first epoch of its own length, trained on the schedule of "
                            "--epochs of it")
    optim.add_argument("--epoch-steps", metavar="N,N,...",
                       help="each epoch's steps, instead of --epochs and --steps-per-epoch "
                            "(what a re-planned budgeted run did: its PLAN lines give the "
                            "flags that repeat it)")
    optim.add_argument("--batch-size", type=positive_int, help="global batch (crops per step, all "
                                                      "replicas); default 32 per replica")
    optim.add_argument("--lr", type=positive_float, help="base (peak) learning rate")
    optim.add_argument("--schedule", choices=SCHEDULES, default="family")
    optim.add_argument("--decay-fraction", type=positive_float, metavar="F",
                       help="hold the warm-up-linear schedule's peak and decay over the last "
                            "fraction F of the run only (default: 0.3 for the main job, else "
                            "the whole run after the warm-up, as the originals; 1: that)")
    optim.add_argument("--time-budget", type=duration, metavar="DURATION",
                       help="size the run to end this long after its start (15m, 900s, 1h30m):"
                            " a few steps are timed, then steps, epochs and the learning-rate "
                            "schedule are planned to fit, and re-planned after each epoch "
                            "from the run's own steps; default 15m for the main job (no "
                            "--data-dir, rsn18), none otherwise; --epochs wins")
    optim.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="fp32, bf16 (mixed_bfloat16) or auto (default: fp32; see README)")
    optim.add_argument("--mixed-precision", action="store_true",
                       help="float16 compute on GPU, bfloat16 on CPU (overrides --precision)")
    jit = optim.add_mutually_exclusive_group()
    jit.add_argument("--jit-compile", dest="jit_compile", action="store_true", default=None,
                     help="XLA (default: on with a GPU, off on CPU where it measured slower)")
    jit.add_argument("--no-jit-compile", dest="jit_compile", action="store_false")
    optim.add_argument("--seed", type=int, default=0)
    optim.add_argument("--deterministic", action="store_true",
                       help="TensorFlow op determinism (bit-reproducible runs, slower)")

    dist = parser.add_argument_group("distribution")
    dist.add_argument("--strategy", default="auto",
                      choices=["auto", "default", "mirrored", "multi_worker"])
    dist.add_argument("--cpu-replicas", type=non_negative_int, default=0,
                      help="mirror over this many logical CPU devices (testing)")

    dist.add_argument("--data-service", metavar="ADDRESS",
                      help="host:port of a tf.data service dispatcher whose workers make the "
                           "batches (python -m keras_pose.data.service; batch order and "
                           "exact resume are then not kept)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", help="run folder (default: a new work_dirs/<model>/<date-time>, "
                                   "with work_dirs/<model>/latest pointing at it)")
    out.add_argument("--resume", action="store_true",
                     help="continue from <out>/backup exactly where the run stopped "
                          "(without --out: the latest run of --model)")
    out.add_argument("--overwrite", action="store_true",
                     help="delete the run that --out holds and start a new one there")
    out.add_argument("--backup-every", type=non_negative_int, default=200,
                     help="steps between backups")
    out.add_argument("--keep-checkpoints", type=non_negative_int, default=3,
                     help="end-of-epoch .keras files kept (0: all)")
    out.add_argument("--eval-every", type=non_negative_int,
                     help="epochs between COCO AP evaluations (0: only at the end; default 5)")
    out.add_argument("--eval-max-images", type=positive_int,
                     help="evaluate on the first N images only")
    out.add_argument("--eval-batch-size", type=positive_int, default=32)
    out.add_argument("--no-tensorboard", action="store_true")
    out.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    out.add_argument("--no-draw", action="store_true", help="skip predictions.png")
    out.add_argument("--verbose", type=int, choices=[0, 1, 2],
                     help="Keras progress output (default: a progress bar)")
    return parser.parse_args(argv)


def duration(text: str) -> float:
    """``--time-budget`` in seconds (an argparse type: a clear message for bad text)."""
    from keras_pose.training.plan import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def model_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    kwargs = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--model-arg must be NAME=VALUE, got {pair!r}")
        try:
            kwargs[name] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[name] = value
    return kwargs


def config_from_args(args: argparse.Namespace):
    from keras_pose.training import TrainConfig

    return TrainConfig(
        data_dir=args.data_dir,
        det_file=args.det_file,
        keypoints_from=args.keypoints_from,
        default_sigma=args.default_sigma,
        train_split=args.train_split,
        val_split=args.val_split,
        num_train_images=args.synthetic_train,
        num_val_images=args.synthetic_val,
        augment="none" if args.no_augment else args.augment,
        model=args.model,
        model_kwargs=model_kwargs(args.model_arg),
        input_size=tuple(args.input_size) if args.input_size else None,
        decode_refine=args.decode_refine,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        first_epoch_steps=args.first_epoch_steps,
        epoch_steps=args.epoch_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        schedule=args.schedule,
        decay_fraction=args.decay_fraction,
        time_budget=args.time_budget,
        precision=args.precision,
        mixed_precision=args.mixed_precision,
        jit_compile=args.jit_compile,
        seed=args.seed,
        deterministic=args.deterministic,
        strategy=args.strategy,
        cpu_replicas=args.cpu_replicas,
        data_service=args.data_service,
        out_dir=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        backup_every=args.backup_every,
        keep_checkpoints=args.keep_checkpoints,
        eval_every=args.eval_every,
        eval_max_images=args.eval_max_images,
        eval_batch_size=args.eval_batch_size,
        tensorboard=not args.no_tensorboard,
        export=not args.no_export,
        draw=not args.no_draw,
        verbose="auto" if args.verbose is None else args.verbose,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train as the command line says; returns the run summary (``summary.json``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    from keras_pose.training import train
    from keras_pose.training.checkpoints import NonFiniteError
    from keras_pose.training.run_folder import RunFolderError

    try:
        return train(config_from_args(args))
    except (RunFolderError, NonFiniteError, ValueError, FileNotFoundError) as error:
        logging.getLogger("train_coco").debug("stopped", exc_info=True)
        raise SystemExit(f"error: {error}") from error


if __name__ == "__main__":
    main(sys.argv[1:])

"""`TrainConfig`: what a run is made of, and the main job's defaults on the synthetic set.

:meth:`TrainConfig.resolved` fills in the defaults (the synthetic set's, the main job's, and
the family's through :mod:`keras_pose.training.recipes`); :func:`check_numbers` names any
setting out of range, with its command-line flag. :mod:`keras_pose.training.trainer` runs it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from keras_pose.models import check_model_name
from keras_pose.training import run_folder

SYNTHETIC_DIR = "synthetic"

# The embedded main job: what a run without a data folder trains, on the synthetic set, sized
# by a time budget (15 minutes: the steps that fit, measured on the machine; see
# keras_pose.training.plan). SYNTHETIC_DEFAULTS apply to any model trained on the synthetic
# set, MAIN_JOB_MODEL to the main job's own model only (another model keeps its family's input
# size and learning rate, batch 16 and 6 epochs); MAIN_JOB_CPU only without a GPU (with one,
# the main job trains at the family's full input size). Batch 24 at Adam 1.2e-2 (1e-2 x
# sqrt(24 / 16)): on 2 cores a step of 24 takes 1.32x one of 16 (RSN-18 128x96 bf16), so 13%
# more crops a second, and on two plans of the budget's length it ended at AP 0.315 / 0.368
# against 0.290-0.323 for four plans of batch 16 at 1e-2 (benchmarks/main_job.md). Batch 16
# history: 6 fixed epochs with RSN's own augmentation gave AP 0.068 in 13:44 (batch 32 at 2e-3:
# 0.008; batch 8: 0.068 for more CPU). Adam: on 600-step screens 3e-3 fell far behind 1e-2
# (AP 0.009 / 0.036, mild augmentation), and 1e-2 to 4e-2 were level with the short
# augmentation (0.047-0.051); over whole runs of batch 16, 2e-2 ended anywhere in 0.285-0.352
# with the plan, 1e-2 in 0.290-0.323 (a narrower spread, the same mean).
# RSN's schedule held at its peak and decayed over the last 30% of the run only (warm-up,
# stable, decay), instead of from the warm-up's end: on the plans of four fresh-clone main jobs
# (1,283-1,458 steps of 24, seed 0) it ended at AP 0.338-0.384 (mean 0.368) where the
# originals' linear decay gave 0.297-0.344 (mean 0.314), each plan higher; and runs whose
# plans differ (the plan follows the machine's speed) share every step until the shorter
# one's decay starts (benchmarks/main_job.md).
MAIN_JOB_DECAY_FRACTION = 0.3
SYNTHETIC_DEFAULTS = {
    "model": "rsn18",
    "batch_size": 16,
    "epochs": 6,
    "eval_every": 2,
    "num_train_images": 1500,
    "num_val_images": 100,
}
MAIN_JOB_MODEL = {
    "batch_size": 24,
    "learning_rate": 1.2e-2,
    "decay_fraction": MAIN_JOB_DECAY_FRACTION,
    "time_budget": "15m",
    "augment": "short",
}
# ``augment="short"``: the family's augmentation cut down to its flips for a run of minutes
# (the main job's default; --augment short). RSN's original (boxes widened by up to 1.6x/1.8x
# at random, scale 0.6-1, rotation +-45 degrees half the time, half-body crops) is built for
# 96,000 iterations on COCO; on a 600-step screen of the main job (lr 1e-2) it reached AP 0.013,
# a mild form of it (scale 0.85-1, rotation +-20) 0.036 and flips alone 0.047
# (benchmarks/main_job.md). The flips, the box and the targets stay the family's.
SHORT_RUN_AUGMENT = {
    "random_extension": (0.0, 0.0),
    "scale": (1.0, 1.0),
    "rotation": 0.0,
    "half_body_prob": 0.0,
}
AUGMENT_PRESETS = {"family": True, "short": SHORT_RUN_AUGMENT, "none": False}
# On CPU the main job trains at 128x96: 32x24 heatmaps, on which the originals' label kernels
# (15, 11, 9, 7, 5; sized for 64x48 heatmaps) draw targets twice as wide relative to the person.
# Halved widths, rounded up so that the last unit keeps a blurred peak (5 -> 3, not a one-hot
# 1), gave AP 0.289 against 0.267 in the same 15 minutes (benchmarks/main_job.md).
# On the same 32x24 heatmaps a cell is 4 crop pixels: DARK's sub-cell step instead of RSN's
# quarter step moved the AP of each of 17 saved main-job models by +0.011 to +0.023 (mean
# +0.017; benchmarks/main_job.md). The targets, losses and model stay RSN's.
MAIN_JOB_CPU = {
    "input_size": (128, 96),
    "model_kwargs": {"target_kernels": (7, 5, 5, 3, 3)},
    "decode_refine": "dark",
}
DECODE_REFINEMENTS = {"quarter": "quarter", "dark": "dark", "none": None}


@dataclasses.dataclass
class TrainConfig:
    """Everything a run is made of. ``None`` means: the family's (or the main job's) default.

    Data:
        data_dir: COCO layout (``annotations/person_keypoints_{train,val}2017.json``,
            ``train2017/``, ``val2017/``); ``None`` renders the synthetic set into
            ``synthetic_dir`` (reused when present) and applies :data:`SYNTHETIC_DEFAULTS`
            (and :data:`MAIN_JOB_MODEL` to the main job's model).
        det_file: person detections for the validation AP (default: ground-truth boxes).
        keypoints_from: a keypoint info file (or COCO annotation file) giving the keypoint
            set's flip pairs, skeleton and OKS sigmas (default: the training annotations').
        default_sigma: OKS sigma of every keypoint for a keypoint set without sigmas (an
            error otherwise, at the start of the run).
        train_split, val_split: split names under ``data_dir``.
        num_train_images, num_val_images: size of the synthetic set.
        augment: ``None`` the family's original augmentation (the main job: ``"short"``),
            a name of :data:`AUGMENT_PRESETS` (``"family"``, ``"short"``: the family's flips
            only, for a short run, ``"none"``), ``False`` none, or a dict of overrides
            (:func:`keras_pose.data.augment_config_for`).
    Model:
        model: a name of :data:`keras_pose.models.MODELS`.
        model_kwargs: further constructor arguments.
        input_size: ``(height, width)``.
        decode_refine: the decode's sub-cell step, a name of :data:`DECODE_REFINEMENTS`
            (``"quarter"``: the originals', ``"dark"``, ``"none"``); kept with the model, so
            its evaluation, ``predictions.png``, exports and any later Predictor use it.
            Default the model's own (the main job on CPU: ``"dark"``).
    Optimisation:
        epochs: default: as many samples as the original saw (:class:`FamilyRecipe`).
        steps_per_epoch: default: one pass over the training people.
        first_epoch_steps: the first epoch's steps, where they differ from the others' (it
            trains on the schedule of ``epochs`` x these steps).
        epoch_steps: each epoch's steps (what a re-planned budgeted run did; instead of
            ``epochs``, ``steps_per_epoch`` and ``first_epoch_steps``). Each epoch trains on
            the schedule of a run whose later epochs are as long as it.
        batch_size: global crops per step (default: the original's per-GPU batch x replicas).
        learning_rate: base (peak) rate; default the family's, scaled to the batch.
        schedule: ``"family"``, ``"constant"``, ``"warmup_linear"`` or ``"multistep"``.
        decay_fraction: a warm-up-linear schedule holds its peak and decays over this last
            fraction of the run only (``None``: the family's, from the warm-up's end).
        time_budget: size the run to end this long after its start (seconds, or text such
            as ``"15m"``): a few steps are timed, then epochs, steps and the schedule are
            planned (:mod:`keras_pose.training.plan`); explicit ``epochs`` win.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (:func:`~keras_pose.training.plan.
            precision_policy`).
        mixed_precision: float16 compute on GPU, bfloat16 on CPU (overrides ``precision``).
        jit_compile: XLA; ``None``: on with a GPU, off on CPU.
        seed: data order, augmentation and initial weights.
        deterministic: TensorFlow op determinism (bit-reproducible, slower).
    Distribution:
        strategy: ``"auto"``, ``"default"``, ``"mirrored"``, ``"multi_worker"``.
        cpu_replicas: split the CPU into this many logical devices for a mirrored strategy.
        data_service: ``host:port`` of a tf.data service dispatcher whose workers make the
            training batches (:mod:`keras_pose.data.service`; one replica; batch order and
            exact resume are then not kept).
    Output:
        out_dir: the run folder (see the module docstring); default a new
            ``work_dirs/<model>/<timestamp>`` (``work_dirs/<model>/latest`` points at it).
            A folder holding another run is refused (see :mod:`~keras_pose.training.run_folder`).
        resume: continue from ``<out_dir>/backup`` (mid-epoch, exactly where it stopped);
            without ``out_dir``, the run ``work_dirs/<model>/latest`` points at.
        overwrite: delete the run ``out_dir`` holds and start a new one there.
        synthetic_dir: where the synthetic set is rendered (default ``<out_dir>/synthetic``
            for a given ``out_dir``, else ``work_dirs/<model>/synthetic``, shared by runs).
        backup_every: steps between backups (and at every epoch end).
        keep_checkpoints: end-of-epoch ``.keras`` files kept (0: all).
        eval_every: epochs between COCO AP evaluations (0: only at the end).
        eval_max_images: evaluate on the first N validation images only.
        eval_batch_size: crops per prediction call.
        tensorboard: write ``logs/``; batch scalars every ``tensorboard_every`` steps.
        export: write a TF Serving SavedModel of the final model.
        draw: write ``predictions.png``.
        verbose: Keras ``fit`` verbosity.
    """

    data_dir: str | None = None
    det_file: str | None = None
    keypoints_from: str | None = None
    default_sigma: float | None = None
    train_split: str = "train2017"
    val_split: str = "val2017"
    num_train_images: int | None = None
    num_val_images: int | None = None
    augment: Any = None
    model: str | None = None
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    input_size: tuple[int, int] | None = None
    decode_refine: str | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None
    first_epoch_steps: int | None = None
    epoch_steps: tuple[int, ...] | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    schedule: str = "family"
    decay_fraction: float | None = None
    time_budget: float | str | None = None
    precision: str = "auto"
    mixed_precision: bool = False
    jit_compile: bool | None = None
    seed: int = 0
    deterministic: bool = False
    strategy: str = "auto"
    cpu_replicas: int = 0
    data_service: str | None = None
    out_dir: str | None = None
    resume: bool = False
    overwrite: bool = False
    synthetic_dir: str | None = None
    backup_every: int = 200
    keep_checkpoints: int = 3
    eval_every: int | None = None
    eval_max_images: int | None = None
    eval_batch_size: int = 32
    tensorboard: bool = True
    tensorboard_every: int = 50
    export: bool = True
    draw: bool = True
    verbose: Any = "auto"

    @property
    def synthetic(self) -> bool:
        return self.data_dir is None

    @property
    def augment_setting(self) -> Any:
        """``augment`` with a preset name (:data:`AUGMENT_PRESETS`) replaced by what it stands
        for: ``None``/``True`` the family's, ``False`` none, or a dict of overrides."""
        if isinstance(self.augment, str):
            return AUGMENT_PRESETS[self.augment]
        return self.augment

    @property
    def budgeted(self) -> bool:
        """The run's length is planned from its time budget."""
        return self.time_budget is not None and self.epochs is None

    def resolved(self) -> TrainConfig:
        """A copy with the main job's defaults filled in (synthetic data only) and the
        remaining fixed defaults (model, out_dir, eval period; a budgeted run's epochs and
        eval period are planned at its start)."""
        from keras_pose.training.plan import PRECISIONS, gpu_visible, parse_duration

        config = dataclasses.replace(self)
        if config.epoch_steps is not None:
            config.epoch_steps = check_epoch_steps(config)
            config.epochs = len(config.epoch_steps)
        if config.synthetic:
            config.model = config.model or SYNTHETIC_DEFAULTS["model"]
            defaults = dict(SYNTHETIC_DEFAULTS)
            if config.model == SYNTHETIC_DEFAULTS["model"]:
                defaults.update(MAIN_JOB_MODEL)
                if not gpu_visible():
                    defaults.update(MAIN_JOB_CPU)
            budget = config.time_budget or defaults.get("time_budget")
            if config.epochs is None and budget is not None:  # planned at the start
                defaults = {k: v for k, v in defaults.items() if k not in ("epochs",
                                                                           "eval_every")}
            if config.schedule not in ("family", "warmup_linear"):
                defaults.pop("decay_fraction", None)  # another shape: the user's own
            main_job_kwargs = defaults.pop("model_kwargs", {})
            if config.input_size is None or tuple(config.input_size) == defaults.get("input_size"):
                config.model_kwargs = {**main_job_kwargs, **config.model_kwargs}
            for field, value in defaults.items():
                if getattr(config, field) is None:
                    setattr(config, field, value)
        if config.epochs is not None:
            config.time_budget = None  # explicit epochs win
        if config.time_budget is not None:
            config.time_budget = parse_duration(config.time_budget)
        if config.precision not in PRECISIONS:
            raise ValueError(f"precision (--precision) must be one of {PRECISIONS}, "
                             f"got {config.precision!r}")
        if config.model is None:
            raise ValueError("give a model (e.g. model='cpn50') to train on a COCO folder")
        config.model = check_model_name(config.model)
        check_numbers(config)
        if config.synthetic and config.synthetic_dir is None:
            parent = config.out_dir or os.path.join(run_folder.WORK_DIRS, config.model)
            config.synthetic_dir = os.path.join(parent, SYNTHETIC_DIR)
        if config.out_dir is None:
            config.out_dir = (run_folder.latest_run_folder(config.model) if config.resume
                              else run_folder.default_run_folder(config.model))
        if not config.budgeted:
            config.eval_every = 5 if config.eval_every is None else config.eval_every
        return config


# Numeric settings: (field, command-line flag, smallest value allowed). ``None`` stays a default.
NUMBER_LIMITS = (
    ("epochs", "--epochs", 1), ("steps_per_epoch", "--steps-per-epoch", 1),
    ("first_epoch_steps", "--first-epoch-steps", 1),
    ("batch_size", "--batch-size", 1), ("num_train_images", "--synthetic-train", 1),
    ("num_val_images", "--synthetic-val", 1), ("backup_every", "--backup-every", 0),
    ("keep_checkpoints", "--keep-checkpoints", 0), ("eval_every", "--eval-every", 0),
    ("eval_max_images", "--eval-max-images", 1), ("eval_batch_size", "--eval-batch-size", 1),
    ("tensorboard_every", None, 1), ("cpu_replicas", "--cpu-replicas", 0),
)


def check_epoch_steps(config: TrainConfig) -> tuple[int, ...]:
    """``config.epoch_steps`` as a tuple, checked (positive integers, no other layout)."""
    steps = config.epoch_steps
    if isinstance(steps, str):
        steps = [int(v) if v.strip().isdigit() else v for v in steps.split(",")]
    if not steps or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in steps):
        raise ValueError("epoch_steps (--epoch-steps) must be integers >= 1, one per epoch, "
                         f"got {config.epoch_steps!r}")
    others = [flag for field, flag in (("steps_per_epoch", "--steps-per-epoch"),
                                       ("first_epoch_steps", "--first-epoch-steps"))
              if getattr(config, field) is not None]
    if config.epochs is not None and config.epochs != len(steps):
        others.append(f"--epochs {config.epochs}")
    if others:
        raise ValueError(f"epoch_steps (--epoch-steps) gives each epoch's steps; drop "
                         f"{', '.join(others)}")
    return tuple(steps)


def check_numbers(config: TrainConfig) -> None:
    """Raise a ``ValueError`` naming the setting (and its flag) of any number out of range."""
    for field, flag, smallest in NUMBER_LIMITS:
        value = getattr(config, field)
        if value is not None and (isinstance(value, bool) or int(value) != value
                                  or value < smallest):
            name = field if flag is None else f"{field} ({flag})"
            raise ValueError(f"{name} must be an integer >= {smallest}, got {value!r}")
    if isinstance(config.augment, str) and config.augment not in AUGMENT_PRESETS:
        raise ValueError(f"augment (--augment) must be one of {', '.join(AUGMENT_PRESETS)}, "
                         f"got {config.augment!r}")
    refine = config.decode_refine
    if refine is not None and refine not in DECODE_REFINEMENTS:
        raise ValueError(f"decode_refine (--decode-refine) must be one of "
                         f"{', '.join(DECODE_REFINEMENTS)}, got {refine!r}")
    rate = config.learning_rate
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"learning_rate (--lr) must be a finite number > 0, got {rate!r}")
    size = config.input_size
    if size is not None and (len(size) != 2 or any(int(v) != v or v < 8 for v in size)):
        raise ValueError(f"input_size (--input-size) must be two integers H W >= 8, got {size!r}")

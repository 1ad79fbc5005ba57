"""Reference files from real MMPose 1.3.2, for keras-pose's weight-import parity tests.

Runs in a separate environment with mmpose installed (never in keras-pose's; see
``docs/provenance.md#mmpose-environment``)::

    /work/mmpose_venv/bin/python tools/mmpose_reference.py --out /work/mmpose_ref
    /work/mmpose_venv/bin/python tools/mmpose_reference.py --keys-only \\
        --keys-dir tests/data/mmpose_keys

For each model (``rsn50``, ``2xmspn50``, ``cpm``, ``hourglass52`` ...) it builds MMPose's
estimator from the config the wheel ships, gives every parameter and BatchNorm statistic random
values (so the statistics matter), and writes to ``OUT``:

* ``{model}.pth`` — the estimator's state dict (what an MMPose checkpoint's ``state_dict`` holds),
  and the same as ``{model}_state.npz`` (read without PyTorch);
* ``{model}.npz`` — ``image``: a fixed RGB 0..255 crop ``(N, H, W, 3)``; ``heatmaps_{i}``:
  every head output for it, ``(N, h, w, K)`` channels-last, in MMPose's order (stage by stage,
  unit by unit; the last is the prediction); ``keypoints`` ``(N, K, 2)`` (crop pixels) and
  ``scores`` ``(N, K)``: MMPose's own decoder on the last output (no flip). MMPose's data
  preprocessor (RGB ImageNet mean/std) is applied here to the same crop.

``--keys-dir`` writes ``{model}.json``: every state-dict key with its shape (no values), the
fixture keras-pose's CI maps without MMPose. keras-pose's parity tests read ``OUT``::

    KERAS_POSE_MMPOSE_REF=/work/mmpose_ref \\
        python -m pytest -s tests/test_convert_mmpose.py -k parity
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types

CONFIGS = {
    "cpm": ("td-hm_cpm_8xb64-210e_coco-256x192.py", (256, 192)),
    "hourglass52": ("td-hm_hourglass52_8xb32-210e_coco-256x256.py", (256, 256)),
    "mspn50": ("td-hm_mspn50_8xb32-210e_coco-256x192.py", (256, 192)),
    "2xmspn50": ("td-hm_2xmspn50_8xb32-210e_coco-256x192.py", (256, 192)),
    "3xmspn50": ("td-hm_3xmspn50_8xb32-210e_coco-256x192.py", (256, 192)),
    "4xmspn50": ("td-hm_4xmspn50_8xb32-210e_coco-256x192.py", (256, 192)),
    "rsn18": ("td-hm_rsn18_8xb32-210e_coco-256x192.py", (256, 192)),
    "rsn50": ("td-hm_rsn50_8xb32-210e_coco-256x192.py", (256, 192)),
    "2xrsn50": ("td-hm_2xrsn50_8xb32-210e_coco-256x192.py", (256, 192)),
    "3xrsn50": ("td-hm_3xrsn50_8xb32-210e_coco-256x192.py", (256, 192)),
}
PARITY_MODELS = (
    "cpm", "hourglass52", "mspn50", "2xmspn50", "4xmspn50", "rsn18", "rsn50", "2xrsn50"
)
BATCH = 2


def stub_mmcv_ops() -> None:
    """mmcv-lite has no compiled ops; mmpose/mmdet import ``mmcv.ops`` for parts we never use."""

    class _Missing(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)

            def missing(*args, **kwargs):
                raise RuntimeError(f"mmcv.ops.{name} is not available in mmcv-lite")

            return missing

    sys.modules.setdefault("mmcv.ops", _Missing("mmcv.ops"))


def build_estimator(config_file: str):
    import mmpose
    import mmpose.codecs  # noqa: F401  (registers the codecs)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpose.models import build_pose_estimator

    init_default_scope("mmpose")
    root = os.path.join(os.path.dirname(mmpose.__file__), ".mim", "configs", "body_2d_keypoint",
                        "topdown_heatmap", "coco")
    config = Config.fromfile(os.path.join(root, config_file))
    model = build_pose_estimator(config.model)
    model.eval()
    return model, config


def randomize(model, seed: int) -> None:
    """Random weights with fan-in scaling, and random BN affine parameters and statistics."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                value = torch.rand(tensor.shape, generator=generator) * 1.5 + 0.5
            elif name.endswith("running_mean"):
                value = torch.randn(tensor.shape, generator=generator) * 0.2
            elif tensor.dim() >= 2:
                fan_in = tensor[0].numel()
                value = torch.randn(tensor.shape, generator=generator) * (1.0 / fan_in) ** 0.5
            elif "bn" in name or "norm" in name or _is_bn_weight(model, name):
                if name.endswith("weight"):
                    value = torch.rand(tensor.shape, generator=generator) + 0.5
                else:
                    value = torch.randn(tensor.shape, generator=generator) * 0.2
            else:
                value = torch.randn(tensor.shape, generator=generator) * 0.2
            tensor.copy_(value)


def _is_bn_weight(model, name: str) -> bool:
    import torch

    module_name = name.rsplit(".", 1)[0]
    module = dict(model.named_modules()).get(module_name)
    return isinstance(module, torch.nn.modules.batchnorm._BatchNorm)


def run(model, config, image):
    """Head outputs for RGB 0..255 ``image`` (N, H, W, 3), as channels-last numpy arrays."""
    import numpy as np
    import torch

    pre = config.model.data_preprocessor
    mean = torch.tensor(pre["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pre["std"]).view(1, 3, 1, 1)
    x = (torch.from_numpy(image).permute(0, 3, 1, 2) - mean) / std
    with torch.no_grad():
        feats = model.extract_feat(x)
        outputs = model.head.forward(feats)
    if isinstance(outputs, torch.Tensor):
        outputs = [outputs]
    return [np.ascontiguousarray(o.permute(0, 2, 3, 1).numpy()) for o in outputs]


def decode(model, heatmaps):
    """MMPose's own decoder (the head's codec, no flip) on ``(N, h, w, K)`` heatmaps:
    keypoints ``(N, K, 2)`` in crop pixels and scores ``(N, K)``."""
    import numpy as np

    keypoints, scores = [], []
    for sample in heatmaps:
        k, s = model.head.decoder.decode(np.ascontiguousarray(sample.transpose(2, 0, 1)))
        keypoints.append(k[0])
        scores.append(s[0])
    return np.stack(keypoints).astype(np.float32), np.stack(scores).astype(np.float32)


def key_shapes(model) -> dict[str, list[int]]:
    return {name: list(tensor.shape) for name, tensor in model.state_dict().items()}


def write_key_fixture(path, config_file, input_size, keys) -> None:
    """JSON with one ``"key": [shape]`` per line (small diffs, easy to read)."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in keys.items()]
    header = f'{{"config": {json.dumps(config_file)}, "input_size": {json.dumps(list(input_size))},'
    with open(path, "w") as handle:
        handle.write(header + '\n "keys": {\n' + ",\n".join(lines) + "\n }\n}\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/work/mmpose_ref", help="directory for .pth/.npz files")
    parser.add_argument("--keys-dir", help="also write {model}.json key/shape fixtures here")
    parser.add_argument("--keys-only", action="store_true", help="only write the key fixtures")
    parser.add_argument("--models", nargs="*", default=None, help=f"subset of {sorted(CONFIGS)}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    stub_mmcv_ops()
    import numpy as np
    import torch

    torch.set_num_threads(1)
    names = args.models or (list(CONFIGS) if args.keys_only else list(PARITY_MODELS))
    for index, name in enumerate(names):
        config_file, (height, width) = CONFIGS[name]
        model, config = build_estimator(config_file)
        if args.keys_dir:
            os.makedirs(args.keys_dir, exist_ok=True)
            write_key_fixture(os.path.join(args.keys_dir, f"{name}.json"), config_file,
                              (height, width), key_shapes(model))
        if args.keys_only:
            print(f"{name}: {len(model.state_dict())} keys")
            continue
        randomize(model, args.seed + index)
        rng = np.random.default_rng(args.seed + index)
        image = rng.uniform(0, 255, (BATCH, height, width, 3)).astype(np.float32)
        outputs = run(model, config, image)
        keypoints, scores = decode(model, outputs[-1])
        os.makedirs(args.out, exist_ok=True)
        torch.save(model.state_dict(), os.path.join(args.out, f"{name}.pth"))
        state = {key: value.numpy() for key, value in model.state_dict().items()}
        np.savez(os.path.join(args.out, f"{name}_state.npz"), **state)
        np.savez(os.path.join(args.out, f"{name}.npz"), image=image, keypoints=keypoints,
                 scores=scores, **{f"heatmaps_{i}": o for i, o in enumerate(outputs)})
        print(f"{name}: {len(outputs)} outputs, last {outputs[-1].shape}, "
              f"range {outputs[-1].min():.3g}..{outputs[-1].max():.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

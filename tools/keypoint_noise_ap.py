"""How precise must a model be to reach a given COCO AP on a keypoint set?

Feeds the ground truth back as predictions with Gaussian noise of ``sigma`` pixels per axis on
every keypoint (score 1) and prints pycocotools' AP for each ``sigma``::

    python tools/keypoint_noise_ap.py \\
        work_dirs/rsn18/synthetic/annotations/person_keypoints_val2017.json

The median error of such a prediction is ``1.177 * sigma`` (a 2-D Gaussian's median radius).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from keras_pose.evaluation.coco_eval import as_coco, coco_keypoint_ap
from keras_pose.evaluation.results import make_results

MEDIAN_RADIUS = float(np.sqrt(2 * np.log(2)))  # median radius of a 2-D standard Gaussian


def noisy_ground_truth(coco, sigma: float, rng: np.random.Generator) -> list[dict]:
    """Every labelled person's keypoints plus N(0, sigma^2) per axis, as COCO results."""
    people = [a for a in coco.dataset["annotations"] if a.get("num_keypoints", 0) > 0]
    keypoints = np.array([np.reshape(a["keypoints"], (-1, 3)) for a in people], np.float64)
    keypoints[..., :2] += rng.normal(0.0, sigma, keypoints[..., :2].shape)
    keypoints[..., 2] = 1.0
    return make_results([a["image_id"] for a in people], keypoints, np.ones(len(people)))


def ap_under_noise(ann_file: str, sigmas: Sequence[float], seed: int = 0) -> list[float]:
    """Keypoint AP of the ground truth with ``sigma``-pixel noise, for each sigma."""
    coco = as_coco(ann_file)
    rng = np.random.default_rng(seed)
    return [coco_keypoint_ap(coco, noisy_ground_truth(coco, s, rng))["AP"] for s in sigmas]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ann_file", help="COCO keypoint annotation json")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[1, 2, 3, 4, 6, 8, 14])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for sigma, ap in zip(args.sigmas, ap_under_noise(args.ann_file, args.sigmas, args.seed)):
        print(f"noise {sigma:g} px per axis (median error {MEDIAN_RADIUS * sigma:.1f} px): "
              f"AP {ap:.3f}")


if __name__ == "__main__":
    main()

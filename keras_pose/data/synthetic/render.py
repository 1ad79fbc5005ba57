"""Rendering of the synthetic dataset's images: articulated, textured people in cluttered
scenes, with keypoints and visibility read from the rendering (:func:`render_example`).

What is drawn (and why it is honest to learn from):

* **Figures** follow a 3D kinematic tree seen by an orthographic camera: body yaw (any
  direction: frontal, profile and back views), forward lean, lateral bend and shoulder twist,
  head yaw/pitch/roll relative to the torso, arms from shoulder elevation/azimuth with an elbow
  bend in a plausible plane, legs from hip flexion/abduction/rotation and a backwards knee bend,
  all within human joint limits, mixed over postures (standing, walking, running, sitting,
  squatting, free) and an occasional large in-plane roll (lying, falling). Segment lengths, body
  width and head size vary per person.
* **Body** parts are tapered limbs with round joints, a torso box with chest depth (narrow in
  profile), hands, feet, neck and a head with hair, face patch, eyes, nose and ears placed on a
  3D head, so frontal/profile/back views change which face keypoints exist: a face keypoint
  whose surface turns away from the camera is ``v=1`` (self-occluded) and ``v=0`` (unlabelled,
  as COCO annotators do for the face of a person seen from behind) when it points far away.
* **Left/right** is decided the way it is for real people (face, a skin-coloured V-neck only on
  the front of the shirt, depth order of the limbs) plus one subtle, documented cue: the
  person's left limbs are drawn 15% darker than the right ones. Without it a back view and a
  front view of a figure with no face in sight would be mirror-ambiguous in an orthographic
  image.
* **Visibility is read from the rendering**, not guessed: every pixel of a label buffer records
  which person and part drew it last. A keypoint is ``v=2`` when the pixel under it belongs to
  a part of its own person that contains it, ``v=1`` when something else covers it (a
  later-drawn person, a foreground object or another part of the same body, e.g. the far arm
  behind the torso) and ``v=0`` with coordinates ``(0, 0)`` when it falls outside the image.
* **Scenes**: cluttered backgrounds (smooth colour fields, random rectangles/circles/polygons/
  lines, limb-like distractor strokes and skin-coloured blobs), 1..``max_people`` people ordered
  by size (bigger = nearer = drawn later), partial overlaps, border truncation, occasional
  foreground objects, clothing textures (stripes, checks, blotches), blur, sensor noise,
  brightness changes and JPEG compression (quality 60..95).

Each image is drawn from its own random stream keyed by ``(seed, split, index)``: the first N
images of a split do not depend on how many are generated.
"""

from __future__ import annotations

import dataclasses
import statistics
import zlib
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

__all__ = [
    "GENERATOR_VERSION",
    "SyntheticExample",
    "check_image_size",
    "example_rng",
    "render_example",
]

GENERATOR_VERSION = 1
NUM_KEYPOINTS = 17
LEFT_SHADE = 0.85

# Keypoint indices (COCO-17 order).
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 11, 12, 13, 14, 15, 16

# Parts: which keypoints each one contains (a keypoint covered by its own part stays visible).
TORSO, NECK, HEAD = 0, 1, 2
L_UPPER_ARM, L_FOREARM, L_HAND, R_UPPER_ARM, R_FOREARM, R_HAND = 3, 4, 5, 6, 7, 8
L_THIGH, L_SHIN, L_FOOT, R_THIGH, R_SHIN, R_FOOT = 9, 10, 11, 12, 13, 14
PART_KEYPOINTS = {
    TORSO: (L_SHOULDER, R_SHOULDER, L_HIP, R_HIP),
    NECK: (L_SHOULDER, R_SHOULDER),
    HEAD: (NOSE, L_EYE, R_EYE, L_EAR, R_EAR),
    L_UPPER_ARM: (L_SHOULDER, L_ELBOW), L_FOREARM: (L_ELBOW, L_WRIST), L_HAND: (L_WRIST,),
    R_UPPER_ARM: (R_SHOULDER, R_ELBOW), R_FOREARM: (R_ELBOW, R_WRIST), R_HAND: (R_WRIST,),
    L_THIGH: (L_HIP, L_KNEE), L_SHIN: (L_KNEE, L_ANKLE), L_FOOT: (L_ANKLE,),
    R_THIGH: (R_HIP, R_KNEE), R_SHIN: (R_KNEE, R_ANKLE), R_FOOT: (R_ANKLE,),
}
LEFT_PARTS = (L_UPPER_ARM, L_FOREARM, L_HAND, L_THIGH, L_SHIN, L_FOOT)

# Label buffer: value = person_slot * 32 + part + 1 (0 = background, OCCLUDER = foreground object).
_PART_BITS = 5
_OCCLUDER = 0xFFFF
_OWNS = np.zeros((1 << _PART_BITS, NUM_KEYPOINTS), bool)
for _part, _kpts in PART_KEYPOINTS.items():
    _OWNS[_part + 1, list(_kpts)] = True

# Face points on a unit head (x = person's left, y = up, z = facing direction), their surface
# normals, and the normal-vs-camera thresholds above which they are visible / labelled.
_FACE_POINTS = np.array(
    [[0.0, -0.1, 1.05], [0.36, 0.2, 0.88], [-0.36, 0.2, 0.88], [0.97, 0.0, -0.1],
     [-0.97, 0.0, -0.1]]
)
_FACE_NORMALS = np.array(
    [[0.0, -0.1, 1.0], [0.35, 0.15, 0.92], [-0.35, 0.15, 0.92], [1.0, 0.0, 0.1], [-1.0, 0.0, 0.1]]
)
_FACE_NORMALS /= np.linalg.norm(_FACE_NORMALS, axis=1, keepdims=True)
_FACE_VISIBLE_ABOVE = np.array([0.15, 0.15, 0.15, -0.45, -0.45])
_FACE_LABELLED_ABOVE = np.array([-0.5, -0.5, -0.5, -0.85, -0.85])

_NORMAL_QUANTILES = np.array([statistics.NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)])
_SHIFT = 4  # OpenCV sub-pixel drawing: coordinates in 1/16 px
_LIGHT = np.array([-0.37, -0.93])  # highlights face the top-left


# ---------------------------------------------------------------------------------------------
# Small geometry helpers
# ---------------------------------------------------------------------------------------------


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rotate_about(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of ``v`` about the unit ``axis``."""
    c, s = np.cos(angle), np.sin(angle)
    return v * c + np.cross(axis, v) * s + axis * np.dot(axis, v) * (1.0 - c)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _hsv_colour(h: float, s: float, v: float) -> np.ndarray:
    """BGR float colour from OpenCV HSV (h in 0..180, s and v in 0..255)."""
    hsv = np.array([[[h, s, v]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Drawing primitives (the same list is drawn into the colour image and the label buffer)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Prim:
    kind: str  # "poly": (N, 2) points; "circle": (cx, cy, r); "ellipse": (cx, cy, ax, ay, deg)
    geom: Any
    part: int
    colour: np.ndarray


def _fixed(values) -> np.ndarray:
    return np.round(np.asarray(values, np.float64) * (1 << _SHIFT)).astype(np.int32)


def _fixed_int(value: float) -> int:
    return int(round(float(value) * (1 << _SHIFT)))


def _draw(canvas: np.ndarray, prim: _Prim, value, line_type: int) -> None:
    if prim.kind == "poly":
        cv2.fillConvexPoly(canvas, _fixed(prim.geom), value, line_type, _SHIFT)
    elif prim.kind == "circle":
        cx, cy, r = (_fixed_int(v) for v in prim.geom)
        cv2.circle(canvas, (cx, cy), max(r, 8), value, -1, line_type, _SHIFT)
    else:
        cx, cy, ax, ay = (_fixed_int(v) for v in prim.geom[:4])
        cv2.ellipse(canvas, (cx, cy), (max(ax, 8), max(ay, 8)), float(prim.geom[4]), 0, 360,
                    value, -1, line_type, _SHIFT)


def _limb(a, b, ra: float, rb: float, part: int, colour: np.ndarray) -> list[_Prim]:
    """A tapered limb from ``a`` to ``b`` with round ends and a soft highlight stripe."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    prims = [_Prim("circle", (a[0], a[1], ra), part, colour),
             _Prim("circle", (b[0], b[1], rb), part, colour)]
    length = float(np.linalg.norm(b - a))
    if length < 1e-3:
        return prims
    u = (b - a) / length
    n = np.array([-u[1], u[0]])
    body = [a + n * ra, b + n * rb, b - n * rb, a - n * ra]
    prims.insert(0, _Prim("poly", np.array(body), part, colour))
    if np.dot(n, _LIGHT) < 0:
        n = -n
    light = np.minimum(colour * 1.2 + 12, 255)
    stripe = [a + n * ra * 0.65, b + n * rb * 0.65, b + n * rb * 0.25, a + n * ra * 0.25]
    prims.append(_Prim("poly", np.array(stripe), part, light))
    return prims


# ---------------------------------------------------------------------------------------------
# Body: a 3D kinematic tree in units of standing height (x = person's left, y = up, z = front)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Body:
    points: dict[str, np.ndarray]  # named 3D points (body frame, pelvis at the origin)
    head_rotation: np.ndarray  # 3x3, head frame -> body frame
    torso_rotation: np.ndarray  # 3x3, torso frame -> body frame
    yaw: float
    radii: dict[str, float]


def _leg_angles(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Hip flexion (forward +), knee flexion (>= 0) per leg (left, right), abduction, lean."""
    posture = rng.choice(6, p=[0.28, 0.2, 0.14, 0.12, 0.08, 0.18])
    lean = abs(rng.normal(0.0, 0.15))
    if posture == 0:  # standing
        flex = rng.normal(0.0, 0.1, 2)
        knee = rng.uniform(0.0, 0.25, 2)
    elif posture == 1:  # walking
        swing = rng.uniform(0.2, 0.55) * np.sin(rng.uniform(0, 2 * np.pi))
        flex = np.array([swing, -swing])
        knee = rng.uniform(0.0, 0.7, 2)
    elif posture == 2:  # running
        flex = np.array([rng.uniform(0.4, 1.3), rng.uniform(-0.5, 0.1)])[rng.permutation(2)]
        knee = np.where(flex > 0.3, rng.uniform(0.3, 1.4, 2), rng.uniform(0.6, 2.0, 2))
        lean = rng.uniform(0.1, 0.45)
    elif posture == 3:  # sitting
        flex = rng.uniform(1.1, 1.7, 2)
        knee = rng.uniform(1.1, 1.9, 2)
        lean = rng.uniform(-0.15, 0.35)
    elif posture == 4:  # squatting
        flex = rng.uniform(1.5, 2.1, 2)
        knee = rng.uniform(1.9, 2.45, 2)
        lean = rng.uniform(0.3, 0.9)
    else:  # anything within the joint limits
        flex = rng.uniform(-0.45, 1.9, 2)
        knee = rng.uniform(0.0, 2.3, 2)
        lean = rng.uniform(-0.2, 1.1) if rng.random() < 0.4 else lean
    abduction = np.where(rng.random(2) < 0.85, np.abs(rng.normal(0.0, 0.12, 2)),
                         rng.uniform(0.15, 0.8, 2))
    return flex, knee, abduction, float(lean)


def _arm(rng: np.random.Generator, side: float, running: bool) -> tuple[np.ndarray, np.ndarray]:
    """Upper-arm and forearm unit directions in the torso frame for one arm."""
    choice = rng.random()
    elevation = (rng.uniform(0.0, 0.8) if choice < 0.5 else
                 rng.uniform(0.5, 2.1) if choice < 0.85 else rng.uniform(1.7, 2.95))
    azimuth = rng.uniform(-0.6, 2.4)  # 0 = sideways, pi/2 = forward, beyond = across the body
    if azimuth < 0:
        elevation = min(elevation, 1.0)  # the shoulder extends backwards only so far
    upper = np.array([side * np.sin(elevation) * np.cos(azimuth), -np.cos(elevation),
                      np.sin(elevation) * np.sin(azimuth)])
    bend = rng.uniform(0.0, 0.5) if rng.random() < 0.4 else rng.uniform(0.3, 2.5)
    if running:
        bend = rng.uniform(1.1, 1.9)
    preferred = np.array([-side * 0.3, 0.2, 1.0])  # forearms fold forward, inward and up
    plane = preferred - np.dot(preferred, upper) * upper
    if np.linalg.norm(plane) < 1e-3:
        plane = np.array([0.0, 1.0, 0.0]) - upper[1] * upper
    plane = _rotate_about(_unit(plane), upper, side * rng.uniform(-0.8, 0.8))
    forearm = np.cos(bend) * upper + np.sin(bend) * _unit(plane)
    return upper, _unit(forearm)


def _sample_body(rng: np.random.Generator) -> _Body:
    width = rng.uniform(0.8, 1.3)
    lengths = rng.uniform(0.92, 1.08, 5)
    hip_w, shoulder_w = 0.085 * width ** 0.5, 0.115 * width ** 0.5
    torso_len, neck_len, head_r = 0.29 * lengths[0], 0.06, 0.062 * rng.uniform(0.9, 1.12)
    upper_len, fore_len, hand_len = 0.175 * lengths[1], 0.15 * lengths[2], 0.06
    thigh_len, shin_len = 0.245 * lengths[3], 0.235 * lengths[4]

    flex, knee, abduction, lean = _leg_angles(rng)
    running = bool(np.all(knee > 0.3) and np.ptp(flex) > 0.6)
    torso = _rot_y(np.clip(rng.normal(0, 0.25), -0.6, 0.6)) @ _rot_x(lean) @ _rot_z(
        rng.normal(0, 0.12))
    head = torso @ (_rot_y(np.clip(rng.normal(0, 0.5), -1.3, 1.3))
                    @ _rot_x(np.clip(rng.normal(0, 0.25), -0.6, 0.7)) @ _rot_z(rng.normal(0, 0.12)))

    p: dict[str, np.ndarray] = {}
    mid_shoulder = torso @ np.array([0.0, torso_len, 0.0])
    p["mid_shoulder"] = mid_shoulder
    p["head"] = mid_shoulder + head @ np.array([0.0, neck_len + 0.9 * head_r, 0.0])
    down = np.array([0.0, -1.0, 0.0])
    for name, side in (("left", 1.0), ("right", -1.0)):
        i = 0 if side > 0 else 1
        shoulder = mid_shoulder + torso @ np.array([side * shoulder_w, -0.01, 0.0])
        upper, forearm = _arm(rng, side, running)
        p[f"{name}_shoulder"] = shoulder
        p[f"{name}_elbow"] = shoulder + torso @ upper * upper_len
        p[f"{name}_wrist"] = p[f"{name}_elbow"] + torso @ forearm * fore_len
        p[f"{name}_hand"] = p[f"{name}_wrist"] + torso @ forearm * hand_len * 0.6

        thigh = _rot_z(side * abduction[i]) @ _rot_x(-flex[i]) @ _rot_y(side * rng.normal(0, 0.2))
        hip = np.array([side * hip_w, 0.0, 0.0])
        p[f"{name}_hip"] = hip
        p[f"{name}_knee"] = hip + thigh @ down * thigh_len
        shin = thigh @ _rot_x(knee[i]) @ down
        p[f"{name}_ankle"] = p[f"{name}_knee"] + shin * shin_len
        toe_dir = _unit(np.array([side * 0.25, 0.0, 1.0]) - shin * np.dot(shin, [0, 0, 1.0]))
        p[f"{name}_heel"] = p[f"{name}_ankle"] + shin * 0.02 - toe_dir * 0.015
        p[f"{name}_toe"] = p[f"{name}_ankle"] + shin * 0.03 + toe_dir * 0.09

    depth = 0.065 * width ** 0.5
    for name, side in (("left", 1.0), ("right", -1.0)):
        for front in (1.0, -1.0):
            p[f"torso_{name}_shoulder_{front:+.0f}"] = (
                p[f"{name}_shoulder"] + torso @ np.array([side * 0.02, 0.015, front * depth]))
            p[f"torso_{name}_hip_{front:+.0f}"] = p[f"{name}_hip"] + np.array(
                [side * 0.03 * width, -0.02, front * depth])
    for i, (x, y) in enumerate(((0.045, -0.005), (-0.045, -0.005), (0.0, -0.075))):
        p[f"collar{i}"] = mid_shoulder + torso @ np.array([x, y, depth * 0.8])
    for i, local in enumerate(_FACE_POINTS):
        p[f"face{i}"] = p["head"] + head @ local * head_r

    radii = {
        "upper_arm": 0.03 * width, "elbow": 0.025 * width, "wrist": 0.02 * width,
        "hand": 0.024, "hip": 0.05 * width, "knee": 0.036 * width, "ankle": 0.026 * width,
        "foot": 0.022, "neck": 0.028 * width ** 0.5, "head": head_r,
    }
    return _Body(p, head, torso, float(rng.uniform(-np.pi, np.pi)), radii)


@dataclasses.dataclass
class _Look:
    skin: np.ndarray
    hair: np.ndarray
    shirt: np.ndarray
    trousers: np.ndarray
    shoes: np.ndarray
    long_sleeves: bool
    shorts: bool
    shirt_pattern: tuple
    trousers_pattern: tuple


def _sample_pattern(rng: np.random.Generator) -> tuple:
    kind = rng.choice(["plain", "stripes", "checks", "blotches"], p=[0.35, 0.25, 0.15, 0.25])
    return (str(kind), float(rng.uniform(0.1, 0.3)), float(rng.uniform(3.0, 12.0)),
            float(rng.uniform(0, np.pi)), int(rng.integers(1 << 30)))


def _sample_look(rng: np.random.Generator) -> _Look:
    hair_choices = ((10, 120, 30), (12, 150, 70), (20, 120, 170), (0, 0, 150), (10, 60, 50))
    hair = np.array(hair_choices[rng.integers(len(hair_choices))], np.float64)
    hair += rng.uniform(-10, 10, 3)
    return _Look(
        skin=_hsv_colour(rng.uniform(5, 18), rng.uniform(50, 160), rng.uniform(90, 240)),
        hair=_hsv_colour(*np.clip(hair, 0, [179, 255, 255])),
        shirt=_hsv_colour(rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(40, 245)),
        trousers=_hsv_colour(rng.uniform(0, 180), rng.uniform(0, 220), rng.uniform(30, 220)),
        shoes=_hsv_colour(rng.uniform(0, 180), rng.uniform(0, 200), rng.uniform(20, 150)),
        long_sleeves=bool(rng.random() < 0.5),
        shorts=bool(rng.random() < 0.3),
        shirt_pattern=_sample_pattern(rng),
        trousers_pattern=_sample_pattern(rng),
    )


# ---------------------------------------------------------------------------------------------
# A placed person: 2D keypoints, face visibility and drawing primitives
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Person:
    keypoints: np.ndarray  # (17, 2) image px
    face_visibility: np.ndarray  # (5,) 0/1/2 from head orientation alone
    prims: list[_Prim]
    look: _Look
    height: float


def _project(body: _Body, height: float, centre: Sequence[float], roll: float):
    """Image positions (name -> (x, y)), depths and the camera rotation for a placement."""
    camera = _rot_z(roll) @ _rot_y(body.yaw)
    names = list(body.points)
    cam = np.stack([body.points[n] for n in names]) @ camera.T
    xy = np.stack([centre[0] + height * cam[:, 0], centre[1] - height * cam[:, 1]], axis=1)
    return dict(zip(names, xy)), dict(zip(names, cam[:, 2])), camera


def _keypoints_2d(xy: dict[str, np.ndarray]) -> np.ndarray:
    names = ["face0", "face1", "face2", "face3", "face4"] + [
        f"{side}_{joint}" for joint in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
        for side in ("left", "right")]
    return np.stack([xy[n] for n in names])


def _face_visibility(body: _Body, camera: np.ndarray) -> np.ndarray:
    towards_camera = (_FACE_NORMALS @ (camera @ body.head_rotation).T)[:, 2]
    return np.where(towards_camera > _FACE_VISIBLE_ABOVE, 2,
                    np.where(towards_camera > _FACE_LABELLED_ABOVE, 1, 0))


def _person_prims(body: _Body, look: _Look, xy, z, camera, height: float,
                  face_visibility: np.ndarray) -> list[_Prim]:
    """All primitives of one person, far parts first."""
    r = {k: v * height for k, v in body.radii.items()}
    parts: list[tuple[float, list[_Prim]]] = []

    def add(depth: float, prims: list[_Prim]) -> None:
        parts.append((depth, prims))

    def shade(colour: np.ndarray, part: int) -> np.ndarray:
        return colour * LEFT_SHADE if part in LEFT_PARTS else colour

    sleeve = look.shirt if look.long_sleeves else look.skin
    leg_low = look.skin if look.shorts else look.trousers
    for side, (ua, fa, hand, th, sh, foot) in (
        ("left", (L_UPPER_ARM, L_FOREARM, L_HAND, L_THIGH, L_SHIN, L_FOOT)),
        ("right", (R_UPPER_ARM, R_FOREARM, R_HAND, R_THIGH, R_SHIN, R_FOOT)),
    ):
        def seg(a, b, ra, rb, part, colour):
            add(0.5 * (z[a] + z[b]), _limb(xy[a], xy[b], ra, rb, part, shade(colour, part)))

        seg(f"{side}_shoulder", f"{side}_elbow", r["upper_arm"], r["elbow"], ua, look.shirt)
        seg(f"{side}_elbow", f"{side}_wrist", r["elbow"], r["wrist"], fa, sleeve)
        seg(f"{side}_wrist", f"{side}_hand", r["wrist"], r["hand"], hand, look.skin)
        seg(f"{side}_hip", f"{side}_knee", r["hip"], r["knee"], th, look.trousers)
        seg(f"{side}_knee", f"{side}_ankle", r["knee"], r["ankle"], sh, leg_low)
        seg(f"{side}_heel", f"{side}_toe", r["ankle"], r["foot"], foot, look.shoes)

    corners = [k for k in xy if k.startswith("torso_")]
    hull = cv2.convexHull(np.stack([xy[k] for k in corners]).astype(np.float32))[:, 0]
    torso = [_Prim("poly", hull.astype(np.float64), TORSO, look.shirt)]
    front = camera @ body.torso_rotation @ np.array([0.0, 0.0, 1.0])
    if front[2] > 0.2:  # the V-neck is on the front of the shirt only
        collar = np.stack([xy["collar0"], xy["collar1"], xy["collar2"]])
        torso.append(_Prim("poly", collar, TORSO, look.skin))
    torso_depth = float(np.mean([z[k] for k in corners])) - 0.02
    add(torso_depth, torso)

    head_depth = float(z["head"]) + 0.03
    add(head_depth - 1e-4, _limb(xy["mid_shoulder"], xy["head"], r["neck"], r["neck"], NECK,
                                 look.skin))
    add(head_depth, _head_prims(body, look, xy, camera, r["head"], face_visibility))
    parts.sort(key=lambda item: item[0])
    return [prim for _, prims in parts for prim in prims]


def _head_prims(body: _Body, look: _Look, xy, camera, radius: float,
                face_visibility: np.ndarray) -> list[_Prim]:
    rotation = camera @ body.head_rotation
    forward, up = rotation[:, 2], rotation[:, 1]
    fwd_xy, up_xy = np.array([forward[0], -forward[1]]), np.array([up[0], -up[1]])
    c = xy["head"]
    prims = []

    def circle(centre, rad, colour):
        prims.append(_Prim("circle", (centre[0], centre[1], rad), HEAD, colour))

    if forward[2] < -0.2:  # seen from behind: mostly hair
        circle(c, radius, look.skin)
        circle(c + 0.15 * radius * up_xy, radius, look.hair)
    else:
        circle(c + radius * (0.12 * up_xy - 0.25 * fwd_xy), radius * 1.02, look.hair)
        circle(c + radius * (0.18 * fwd_xy - 0.12 * up_xy), radius * 0.85, look.skin)
    for ear in (L_EAR, R_EAR):
        if face_visibility[ear] == 2:
            e = xy[f"face{ear}"]
            prims.append(_Prim("ellipse", (e[0], e[1], 0.18 * radius, 0.27 * radius,
                                           np.degrees(np.arctan2(up_xy[1], up_xy[0]))),
                               HEAD, look.skin * 0.88))
    for eye in (L_EYE, R_EYE):
        if face_visibility[eye] == 2:
            circle(xy[f"face{eye}"], max(0.13 * radius, 0.7), look.hair * 0.4)
    if face_visibility[NOSE] == 2:
        circle(xy["face0"], max(0.14 * radius, 0.7), look.skin * 0.75)
    return prims


def _inside(points: np.ndarray, h: int, w: int) -> np.ndarray:
    return ((points[:, 0] >= 0) & (points[:, 0] <= w - 1)
            & (points[:, 1] >= 0) & (points[:, 1] <= h - 1))


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x0, y0, x1, y1 boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-9)


def _sample_roll(rng: np.random.Generator) -> float:
    """In-image rotation: mostly upright, sometimes lying or falling."""
    if rng.random() < 0.93:
        return float(rng.normal(0.0, 0.12))
    return float(rng.choice([-1.0, 1.0]) * rng.uniform(1.1, 1.8))


def _place_person(rng: np.random.Generator, h: int, w: int,
                  others: list[np.ndarray]) -> _Person | None:
    """Sample a body and a placement with >= 4 keypoints in the image and limited overlap."""
    body, look = _sample_body(rng), _sample_look(rng)
    for _ in range(20):
        height = h * (rng.uniform(0.35, 0.95) if rng.random() < 0.8 else rng.uniform(0.9, 1.5))
        roll = _sample_roll(rng)
        centre = (rng.uniform(-0.05, 1.05) * w, rng.uniform(0.25, 0.85) * h)
        xy, z, camera = _project(body, height, centre, roll)
        keypoints = _keypoints_2d(xy)
        extent = np.concatenate([keypoints.min(0), keypoints.max(0)])
        if _inside(keypoints, h, w).sum() < 4:
            continue
        if any(_box_iou(extent, other) > 0.4 for other in others):
            continue
        others.append(extent)
        face = _face_visibility(body, camera)
        prims = _person_prims(body, look, xy, z, camera, height, face)
        return _Person(keypoints, face, prims, look, height)
    return None


# ---------------------------------------------------------------------------------------------
# Background, foreground objects, textures
# ---------------------------------------------------------------------------------------------


def _random_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(0, 255, 3))


def _render_background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list]:
    """Cluttered background and the boxes of its person-like distractors."""
    grid = rng.uniform(0, 255, (int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3))
    smooth = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    image = np.clip(smooth, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(5, 25))):
        colour, kind = _random_colour(rng), rng.integers(4)
        x, y = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        size = rng.uniform(0.03, 0.35) * min(h, w)
        if kind == 0:
            thickness = -1 if rng.random() < 0.7 else int(rng.integers(1, 5))
            cv2.rectangle(image, (int(x), int(y)), (int(x + size * rng.uniform(0.3, 3)),
                                                    int(y + size * rng.uniform(0.3, 3))),
                          colour, thickness)
        elif kind == 1:
            cv2.circle(image, (int(x), int(y)), int(size / 2), colour, -1, cv2.LINE_AA)
        elif kind == 2:
            pts = np.array([x, y]) + rng.uniform(-size, size, (int(rng.integers(3, 7)), 2))
            cv2.fillPoly(image, [pts.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            end = np.array([x, y]) + rng.uniform(-2 * size, 2 * size, 2)
            cv2.line(image, (int(x), int(y)), (int(end[0]), int(end[1])), colour,
                     int(rng.integers(1, 8)), cv2.LINE_AA)
    distractors = [_draw_distractor(rng, image, h, w) for _ in range(int(rng.integers(0, 4)))]
    return image, distractors


def _draw_distractor(rng: np.random.Generator, image: np.ndarray, h: int, w: int) -> np.ndarray:
    """A limb-like chain of thick strokes (sometimes skin coloured, sometimes with a 'head')."""
    skin_like = rng.random() < 0.5
    colour = (_hsv_colour(rng.uniform(5, 18), rng.uniform(50, 160), rng.uniform(90, 240))
              if skin_like else np.array(_random_colour(rng)))
    scale = rng.uniform(0.08, 0.3) * h
    thickness = max(2, int(scale * rng.uniform(0.08, 0.2)))
    points = [np.array([rng.uniform(0, w), rng.uniform(0, h)])]
    for _ in range(int(rng.integers(2, 4))):
        angle = rng.uniform(0, 2 * np.pi)
        points.append(points[-1] + scale * np.array([np.cos(angle), np.sin(angle)]))
    pts = np.stack(points)
    cv2.polylines(image, [_fixed(pts)], False, tuple(colour), thickness, cv2.LINE_AA, _SHIFT)
    if rng.random() < 0.3:
        cv2.circle(image, tuple(int(v) for v in pts[0]), int(thickness * 1.3), tuple(colour), -1,
                   cv2.LINE_AA)
    lo = np.clip(pts.min(0) - thickness, 0, [w - 1, h - 1])
    hi = np.clip(pts.max(0) + thickness, 0, [w - 1, h - 1])
    return np.concatenate([lo, hi - lo + 1])


def _sample_occluders(rng: np.random.Generator, h: int, w: int) -> list[_Prim]:
    """Foreground objects (a table, a sign...) drawn over everyone in 30% of the images."""
    prims = []
    count = int(rng.integers(1, 3)) if rng.random() < 0.3 else 0
    for _ in range(count):
        colour = np.array(_random_colour(rng))
        cx, cy = rng.uniform(0, w), rng.uniform(0.3, 1.0) * h
        bw, bh = rng.uniform(0.08, 0.3) * w, rng.uniform(0.08, 0.3) * h
        if rng.random() < 0.5:
            corners = np.array([[cx - bw, cy - bh], [cx + bw, cy - bh], [cx + bw, cy + bh],
                                [cx - bw, cy + bh]])
            prims.append(_Prim("poly", corners, -1, colour))
        else:
            prims.append(_Prim("ellipse", (cx, cy, bw, bh, rng.uniform(0, 180)), -1, colour))
    return prims


def _pattern(spec: tuple, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """A multiplicative clothing texture (values around 1) over an image region."""
    kind, amplitude, period, angle, seed = spec
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    if kind == "stripes":
        wave = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * (2 * np.pi / period))
    elif kind == "checks":
        wave = np.sign(np.sin(xs * (np.pi / period)) * np.sin(ys * (np.pi / period)))
    elif kind == "blotches":
        grid = np.random.default_rng(seed).uniform(-1, 1, (max(2, (y1 - y0) // 6 + 2),
                                                          max(2, (x1 - x0) // 6 + 2)))
        wave = cv2.resize(grid.astype(np.float32), (x1 - x0, y1 - y0),
                          interpolation=cv2.INTER_LINEAR)
    else:
        return np.ones_like(xs)
    return 1.0 + amplitude * wave


# ---------------------------------------------------------------------------------------------
# One example
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SyntheticExample:
    """One rendered image with its people.

    Attributes:
        image: ``(H, W, 3)`` uint8 BGR, before JPEG compression.
        keypoints: ``(N, 17, 3)`` float32 ``x, y, v`` (``v = 0`` -> ``x = y = 0``).
        boxes: ``(N, 4)`` float32 ``x, y, w, h`` whole-body extent clipped to the image.
        masks: ``(N, H, W)`` bool visible pixels of each person.
        foreground: ``(H, W)`` bool pixels drawn by people or foreground objects.
        distractor_boxes: ``(M, 4)`` float32 ``x, y, w, h`` of person-like background clutter.
    """

    image: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    foreground: np.ndarray
    distractor_boxes: np.ndarray

    @property
    def areas(self) -> np.ndarray:
        return self.masks.sum(axis=(1, 2)).astype(np.float32)


def example_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    key = [int(seed), zlib.crc32(split.encode()), int(index), stream]
    return np.random.default_rng(np.random.SeedSequence(key))


def _label_pass(people: list[_Person], occluders: list[_Prim], h: int, w: int):
    """Label buffer and each person's whole-body (amodal) box, in drawing order."""
    labels = np.zeros((h, w), np.uint16)
    boxes = []
    for slot, person in enumerate(people, start=1):
        for prim in person.prims:
            _draw(labels, prim, slot * 32 + prim.part + 1, cv2.LINE_8)
        mask = (labels >> _PART_BITS) == slot
        cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
        boxes.append((int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]),
                      int(np.count_nonzero(mask))) if len(cols) else None)
    for prim in occluders:
        _draw(labels, prim, _OCCLUDER, cv2.LINE_8)
    return labels, boxes


def _visibility(person: _Person, slot: int, labels: np.ndarray) -> np.ndarray:
    """COCO visibility from the label buffer, the image border and the head orientation."""
    h, w = labels.shape
    v = np.ones(NUM_KEYPOINTS, np.int64)
    inside = _inside(person.keypoints, h, w)
    cols = np.clip(np.round(person.keypoints[:, 0]).astype(int), 0, w - 1)
    rows = np.clip(np.round(person.keypoints[:, 1]).astype(int), 0, h - 1)
    value = labels[rows, cols].astype(np.int64)
    own = (value >> _PART_BITS) == slot
    part_row = np.where(own, value & ((1 << _PART_BITS) - 1), 0)
    contains = _OWNS[part_row, np.arange(NUM_KEYPOINTS)]
    v[(own & contains) | (value == 0)] = 2
    v[:5] = np.minimum(v[:5], person.face_visibility)
    v[~inside] = 0
    return v


def _annotate(people: list[_Person], occluders: list[_Prim], h: int, w: int):
    """Drop people too hidden to annotate (they are not drawn), then label the rest."""
    while True:
        labels, boxes = _label_pass(people, occluders, h, w)
        keep, results = [], []
        owner = labels >> _PART_BITS
        for slot, (person, box) in enumerate(zip(people, boxes), start=1):
            v = _visibility(person, slot, labels)
            visible = owner == slot
            shown = int(np.count_nonzero(visible))
            ok = (box is not None and (v > 0).sum() >= 3 and (v == 2).sum() >= 2
                  and shown >= 0.2 * box[4])
            keep.append(ok)
            results.append((v, box, visible))
        if all(keep):
            return labels, results
        people[:] = [p for p, k in zip(people, keep) if k]


def _apply_textures(image: np.ndarray, people: list[_Person], results, labels: np.ndarray
                    ) -> None:
    """Multiply each person's visible shirt and trouser pixels by their clothing pattern."""
    for slot, (person, (_, box, _)) in enumerate(zip(people, results), start=1):
        x0, y0, x1, y1 = box[0], box[1], box[2] + 1, box[3] + 1
        region = labels[y0:y1, x0:x1]
        shirt = [TORSO, L_UPPER_ARM, R_UPPER_ARM]
        if person.look.long_sleeves:
            shirt += [L_FOREARM, R_FOREARM]
        trousers = [L_THIGH, R_THIGH]
        if not person.look.shorts:
            trousers += [L_SHIN, R_SHIN]
        for parts, spec in ((shirt, person.look.shirt_pattern),
                            (trousers, person.look.trousers_pattern)):
            if spec[0] == "plain":
                continue
            mask = np.isin(region, [slot * 32 + part + 1 for part in parts])
            if mask.any():
                pixels = image[y0:y1, x0:x1][mask].astype(np.float32)
                factor = _pattern(spec, x0, y0, x1, y1)[mask][:, None]
                image[y0:y1, x0:x1][mask] = np.clip(pixels * factor, 0, 255).astype(np.uint8)


def _sample_people(rng: np.random.Generator, h: int, w: int, max_people: int
                   ) -> tuple[list[_Person], list[_Prim]]:
    """People in drawing order (bigger = nearer = later) and foreground objects."""
    people: list[_Person] = []
    extents: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, max_people + 1))):
        person = _place_person(rng, h, w, extents)
        if person is not None:
            people.append(person)
    people.sort(key=lambda p: p.height)
    return people, _sample_occluders(rng, h, w)


def render_example(
    seed: int = 0,
    index: int = 0,
    split: str = "train2017",
    image_size: tuple[int, int] = (240, 320),
    max_people: int = 3,
    draw_foreground: bool = True,
) -> SyntheticExample:
    """Render image ``index`` of ``split`` (the exact image :func:`make_coco_dataset` writes).

    With ``draw_foreground=False`` the same scene is rendered without people and foreground
    objects (identical background, blur and noise), which lets tests check that bodies are
    drawn where the keypoints say.
    """
    h, w = check_image_size(image_size)
    scene_rng = example_rng(seed, split, index, 0)
    image, distractors = _render_background(example_rng(seed, split, index, 1), h, w)
    post_rng = example_rng(seed, split, index, 2)

    for _ in range(10):  # a scene whose people all end up hidden is sampled again
        people, occluders = _sample_people(scene_rng, h, w, max_people)
        labels, results = _annotate(people, occluders, h, w)
        if people:
            break

    if draw_foreground:
        for person in people:
            for prim in person.prims:
                _draw(image, prim, tuple(float(c) for c in prim.colour), cv2.LINE_AA)
        for prim in occluders:
            _draw(image, prim, tuple(float(c) for c in prim.colour), cv2.LINE_AA)
        _apply_textures(image, people, results, labels)
    image = _finish(post_rng, image)

    keypoints = np.zeros((len(people), NUM_KEYPOINTS, 3), np.float32)
    boxes = np.zeros((len(people), 4), np.float32)
    for i, (person, (v, box, _)) in enumerate(zip(people, results)):
        keypoints[i, :, :2] = np.where(v[:, None] > 0, np.round(person.keypoints, 2), 0)
        keypoints[i, :, 2] = v
        boxes[i] = (box[0], box[1], box[2] - box[0] + 1, box[3] - box[1] + 1)
    masks = np.stack([r[2] for r in results]) if results else np.zeros((0, h, w), bool)
    distractor_boxes = np.array(distractors, np.float32).reshape(-1, 4)
    return SyntheticExample(image, keypoints, boxes, masks, labels > 0, distractor_boxes)


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Blur, brightness/contrast and Gaussian sensor noise (8-bit, saturating)."""
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.5, 1.0))
    gain, bias, sigma = rng.uniform(0.75, 1.2), rng.uniform(-20, 20), rng.uniform(1.5, 8.0)
    # Gaussian noise via a 256-entry quantile table indexed by random bytes: exact quantiles,
    # deterministic, and ~10x faster than drawing floats.
    table = np.clip(np.round(128 + sigma * _NORMAL_QUANTILES), 0, 255).astype(np.uint8)
    noise = cv2.LUT(np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape), table)
    return cv2.addWeighted(image, gain, noise, 1.0, bias - 128.0, dtype=cv2.CV_8U)


def check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    if len(image_size) != 2 or min(image_size) < 32:
        raise ValueError(f"image_size must be (height, width) >= 32 px, got {image_size}")
    return int(image_size[0]), int(image_size[1])

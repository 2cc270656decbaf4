"""Procedural source-dataset images: a natural-image stand-in and a radiology stand-in.

These are the pretraining corpora of the built-in demo (the study compares ImageNet and
RadImageNet as sources; neither can be downloaded here). Each image is drawn from a numpy
Generator, so (class, seed) fixes every pixel. docs/datasets.md says what each resembles and
what it cannot.

natural (colour, H x W x 3): one object on a cluttered scene (disc, square, triangle, cross,
  ring) or a whole-image texture (stripes, checkerboard, dots): random colours, pose, scale,
  a colour-gradient background with smooth-noise texture, distractor blobs and sensor noise.
radiology (grey, H x W): modality/anatomy classes in the spirit of RadImageNet's: chest X-ray
  (the project's synthetic radiograph), knee X-ray, head CT, abdomen CT, brain MR, abdominal
  ultrasound, each with per-image anatomy, exposure and the modality's noise.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

from sourcematters_jax.data import synthetic_images

NATURAL_CLASSES = ("disc", "square", "triangle", "cross", "ring", "stripes", "checker", "dots")
RADIOLOGY_CLASSES = ("xr_chest", "xr_knee", "ct_head", "ct_abdomen", "mr_brain", "us_abdomen")
# The TFDS builders of these images (source_builders.py) and their options' defaults; here, so
# that configs can name them without importing TFDS.
SOURCE_DATASETS = ("synthetic_natural", "synthetic_radiology")
BUILDER_OPTIONS = {"seed": 0, "train_per_class": 500, "test_per_class": 100}


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(v, u) coordinates in [-1, 1], row-major."""
    return np.mgrid[-1:1:size * 1j, -1:1:size * 1j].astype(np.float32)


def _soft(inside: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased indicator of `inside > 0` (a signed distance-like field)."""
    return np.clip(0.5 + inside / width, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field in about [-1, 1], `cells` bumps across the image."""
    coarse = rng.normal(size=(cells, cells)).astype(np.float32)
    return ndimage.zoom(coarse, size / cells, order=3)[:size, :size] / 1.5


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# natural
# ---------------------------------------------------------------------------------------------

def _shape_field(name: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Signed insideness (>0 inside, in units of the shape's radius) of an object class."""
    r = np.hypot(u, v)
    if name == "disc":
        return 1.0 - r
    if name == "square":
        return 1.0 - np.maximum(np.abs(u), np.abs(v))
    if name == "triangle":
        angles = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.min([0.5 - (u * np.cos(a) + v * np.sin(a)) for a in angles], axis=0) * 2
    if name == "cross":
        arm = rng.uniform(0.25, 0.4)
        bar = lambda a, b: np.minimum(arm - np.abs(a), 1.0 - np.abs(b))  # noqa: E731
        return np.maximum(bar(u, v), bar(v, u)) / arm
    if name == "ring":
        thick = rng.uniform(0.2, 0.35)
        return (thick - np.abs(r - (1 - thick))) / thick
    raise ValueError(f"unknown object class {name!r}")


def _texture(name: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A [0, 1] whole-image texture pattern."""
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(3, 7)
    a = u * np.cos(angle) + v * np.sin(angle)
    b = -u * np.sin(angle) + v * np.cos(angle)
    if name == "stripes":
        return 0.5 + 0.5 * np.sign(np.sin(np.pi * freq * a)) * np.minimum(
            1, np.abs(np.sin(np.pi * freq * a)) * 4)
    if name == "checker":
        s = np.sin(np.pi * freq * a) * np.sin(np.pi * freq * b)
        return _soft(s, 0.2)
    if name == "dots":
        cell_a, cell_b = freq * a - np.round(freq * a), freq * b - np.round(freq * b)
        return _soft(0.3 - np.hypot(cell_a, cell_b), 0.08)
    raise ValueError(f"unknown texture class {name!r}")


def draw_natural(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One natural-like scene of class NATURAL_CLASSES[label]: uint8 [size, size, 3]."""
    name = NATURAL_CLASSES[label]
    v, u = _grid(size)
    px = 2.0 / size
    # background: a colour gradient plus a smooth texture
    c0, c1 = _colour(rng), _colour(rng)
    direction = rng.uniform(0, 2 * np.pi)
    t = 0.5 + 0.5 * (u * np.cos(direction) + v * np.sin(direction)) / np.sqrt(2)
    image = c0 * (1 - t[..., None]) + c1 * t[..., None]
    image += 40 * _smooth_noise(rng, size, int(rng.integers(4, 12)))[..., None] * rng.uniform(0, 1, 3)
    # distractor blobs (soft, never one of the object shapes)
    for _ in range(int(rng.integers(0, 4))):
        cu, cv, s = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.05, 0.25)
        blob = np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * s * s))
        image = image * (1 - 0.8 * blob[..., None]) + 0.8 * blob[..., None] * _colour(rng)
    if name in ("stripes", "checker", "dots"):
        pattern = _texture(name, u, v, rng)[..., None]
        fg = _colour(rng)
        alpha = rng.uniform(0.6, 1.0)
        image = image * (1 - alpha * pattern) + alpha * pattern * fg
    else:
        scale = rng.uniform(0.3, 0.7)
        cu, cv = rng.uniform(-1 + scale, 1 - scale, 2)
        angle = rng.uniform(0, 2 * np.pi)
        du, dv = (u - cu) / scale, (v - cv) / scale
        ru = du * np.cos(angle) + dv * np.sin(angle)
        rv = -du * np.sin(angle) + dv * np.cos(angle)
        mask = _soft(_shape_field(name, ru, rv, rng), 2 * px / scale)[..., None]
        fg = _colour(rng)
        shade = 1 + 0.25 * (ru * rng.uniform(-1, 1) + rv * rng.uniform(-1, 1))[..., None]
        image = image * (1 - mask) + mask * fg * shade
    image += rng.normal(0, rng.uniform(2, 10), image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# radiology
# ---------------------------------------------------------------------------------------------

def _ellipse(u, v, cu, cv, a, b, angle=0.0) -> np.ndarray:
    du, dv = u - cu, v - cv
    ru = du * np.cos(angle) + dv * np.sin(angle)
    rv = -du * np.sin(angle) + dv * np.cos(angle)
    return 1.0 - np.hypot(ru / a, rv / b)


def _xr_chest(size, rng, u, v):
    anatomy = synthetic_images.sample_anatomy(rng, rng.choice(("M", "F")))
    return synthetic_images.draw_image(anatomy, size, rng, opacities=int(rng.integers(0, 2))) / 255.0


def _xr_knee(size, rng, u, v):
    px = 2.0 / size
    tilt = rng.normal(0, 0.08)
    uu = u * np.cos(tilt) - v * np.sin(tilt) - rng.normal(0, 0.05)
    gap = rng.uniform(0.04, 0.1)
    soft = _soft(0.75 - np.abs(uu) - 0.1 * v ** 2, 6 * px) * 0.25
    femur = _soft(0.22 - np.abs(uu) + 0.25 * np.clip(v + 0.3, 0, None) ** 1.5 * 2, 2 * px) \
        * _soft(-gap - v, 2 * px)
    tibia = _soft(0.2 - np.abs(uu) + 0.3 * np.clip(0.3 - v, 0, None) ** 1.5 * 2, 2 * px) \
        * _soft(v - gap, 2 * px)
    bone = np.maximum(femur, tibia)
    cortex = bone * (0.6 + 0.4 * _soft(np.abs(uu) - 0.14, 4 * px))
    patella = _soft(_ellipse(uu, v, rng.uniform(0.1, 0.2), -0.25, 0.1, 0.14), 3 * px) * 0.3
    return 0.05 + soft + 0.55 * cortex + patella


def _ct_head(size, rng, u, v):
    px = 2.0 / size
    a, b, ang = rng.uniform(0.62, 0.75), rng.uniform(0.75, 0.88), rng.normal(0, 0.1)
    skull_out = _soft(_ellipse(u, v, 0, 0, a, b, ang), 2 * px)
    skull_in = _soft(_ellipse(u, v, 0, 0, a - 0.07, b - 0.07, ang), 2 * px)
    brain = skull_in * (0.42 + 0.04 * _smooth_noise(rng, size, 10))
    vent = sum(_soft(_ellipse(u, v, s * rng.uniform(0.06, 0.12), rng.normal(-0.05, 0.05),
                              0.06, rng.uniform(0.15, 0.25), s * 0.3), 2 * px) for s in (-1, 1))
    return 0.02 + 0.9 * (skull_out - skull_in) + brain - 0.15 * vent * skull_in


def _ct_abdomen(size, rng, u, v):
    px = 2.0 / size
    a, b = rng.uniform(0.78, 0.92), rng.uniform(0.55, 0.68)
    body = _soft(_ellipse(u, v, 0, 0.05, a, b), 2 * px)
    inner = _soft(_ellipse(u, v, 0, 0.05, a - rng.uniform(0.05, 0.12), b - 0.08), 3 * px)
    x = 0.25 * body + 0.2 * inner  # fat ring darker than organs
    x += 0.12 * _soft(_ellipse(u, v, -0.35, -0.05, 0.3, 0.28), 3 * px) * inner  # liver
    for s in (-1, 1):
        x += 0.1 * _soft(_ellipse(u, v, s * 0.3, 0.3, 0.1, 0.14), 2 * px) * inner  # kidneys
    x += 0.45 * _soft(_ellipse(u, v, 0, 0.42, 0.1, 0.09), 2 * px)  # vertebra
    for _ in range(int(rng.integers(2, 7))):  # bowel gas
        x -= 0.4 * _soft(_ellipse(u, v, rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.2),
                                  rng.uniform(0.03, 0.08), rng.uniform(0.03, 0.08)), 2 * px) * inner
    x += 0.3 * _soft(0.02 - np.abs(v - 0.05 - b - 0.06), 2 * px) * _soft(0.9 - np.abs(u), px)
    return 0.02 + x


def _mr_brain(size, rng, u, v):
    px = 2.0 / size
    a, b, ang = rng.uniform(0.6, 0.72), rng.uniform(0.75, 0.86), rng.normal(0, 0.1)
    head = _ellipse(u, v, 0, 0, a, b, ang)
    scalp = _soft(head, 2 * px) - _soft(head - 0.06, 2 * px)
    brain_field = head - 0.14 + 0.04 * _smooth_noise(rng, size, 14)
    brain = _soft(brain_field, 2 * px)
    white = _soft(brain_field - 0.18 + 0.06 * _smooth_noise(rng, size, 18), 3 * px)
    t2 = rng.random() < 0.5  # T2-like: CSF bright, white matter darker
    grey_i, white_i, csf = (0.45, 0.3, 0.8) if t2 else (0.45, 0.65, 0.1)
    vent = sum(_soft(_ellipse(u, v, s * 0.08, -0.05, 0.05, 0.2, s * 0.3), 2 * px) for s in (-1, 1))
    x = 0.7 * scalp + brain * (grey_i + (white_i - grey_i) * white)
    return x * (1 - vent) + vent * csf * brain


def _us_abdomen(size, rng, u, v):
    apex_v = -1.05
    r = np.hypot(u, v - apex_v)
    theta = np.arctan2(u, v - apex_v)
    half = rng.uniform(0.5, 0.75)
    fan = _soft(half - np.abs(theta), 0.02) * _soft(1.95 - r, 0.02) * _soft(r - 0.25, 0.02)
    tissue = 0.35 + 0.1 * _smooth_noise(rng, size, 8)
    for _ in range(int(rng.integers(1, 3))):  # dark cysts / vessels with bright far wall
        cu, cv = rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.6)
        e = _ellipse(u, v, cu, cv, rng.uniform(0.08, 0.2), rng.uniform(0.06, 0.15))
        tissue = tissue * (1 - 0.85 * _soft(e, 0.05)) + 0.3 * _soft(0.05 - np.abs(e), 0.04) * (v > cv)
    speckle = rng.rayleigh(1.0, u.shape).astype(np.float32)
    speckle = ndimage.gaussian_filter(speckle, (0.4 * size / 64, 1.2 * size / 64))
    attenuation = np.exp(-0.4 * r)
    return fan * tissue * speckle * attenuation * 1.3


_RADIOLOGY: dict[str, Callable] = {"xr_chest": _xr_chest, "xr_knee": _xr_knee, "ct_head": _ct_head,
                                   "ct_abdomen": _ct_abdomen, "mr_brain": _mr_brain,
                                   "us_abdomen": _us_abdomen}


def draw_radiology(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One radiology-like image of class RADIOLOGY_CLASSES[label]: uint8 [size, size]."""
    name = RADIOLOGY_CLASSES[label]
    v, u = _grid(size)
    # a small random pose (zoom, shift) for every modality
    zoom = rng.uniform(0.9, 1.12)
    shift = rng.normal(0, 0.04, 2)
    x = np.asarray(_RADIOLOGY[name](size, rng, (u - shift[0]) * zoom, (v - shift[1]) * zoom),
                   np.float32)
    if name != "xr_chest":  # the chest radiograph brings its own blur, exposure and noise
        x = ndimage.gaussian_filter(x, 0.5 * size / 64)
        gain, gamma = rng.normal(230, 15), float(np.clip(rng.normal(1.0, 0.08), 0.75, 1.3))
        x = gain * np.clip(x, 0, None) ** gamma
        noise = rng.normal(0, rng.uniform(1.5, 6), x.shape)
        x = np.abs(x + noise) if name == "mr_brain" else x + noise  # MR magnitude noise
    else:
        x = x * 255.0
    return np.clip(np.round(x), 0, 255).astype(np.uint8)

"""Procedural chest-radiograph-like images: anatomy per patient, a disease signal per image.

Not a medical simulator: enough structure (body outline, lungs, mediastinum and heart, spine,
ribs, clavicles, diaphragm domes, vessels, sex-dependent body shape and breast shadows) that the
study's confounders act on something radiograph-like, and a real but imperfect disease signal
(patchy opacities of random size, place and strength, sometimes faint) so a small CNN learns it
well above chance but not perfectly. Everything is drawn from a numpy Generator, so a seed fixes
every pixel.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage


# Disease patches: radius (fraction of the half-image) and added density (soft tissue is ~0.7).
OPACITY_RADIUS = (0.08, 0.22)
OPACITY_STRENGTH = (0.10, 0.36)


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """One patient's body; follow-up images jitter it slightly."""

    sex: str  # 'M' or 'F'
    torso: float  # half-width of the body outline (fraction of the half-image)
    lung_w: float
    lung_h: float
    lung_gap: float  # half-distance between the lungs' inner edges
    heart: float  # heart radius scale
    dome: float  # diaphragm height
    rib_phase: float
    rib_spacing: float
    breast: float  # breast shadow strength (0 for men)
    vessel_seed: int


def sample_anatomy(rng: np.random.Generator, sex: str) -> Anatomy:
    male = sex == "M"
    return Anatomy(
        sex=sex,
        torso=rng.normal(0.86 if male else 0.76, 0.03),
        lung_w=rng.normal(0.30 if male else 0.27, 0.015),
        lung_h=rng.normal(1.02 if male else 0.94, 0.04),
        lung_gap=rng.normal(0.10, 0.01),
        heart=rng.normal(1.08 if male else 0.95, 0.06),
        dome=rng.normal(0.45, 0.03),
        rib_phase=rng.uniform(0, 1),
        rib_spacing=rng.normal(0.155, 0.008),
        breast=0.0 if male else rng.uniform(0.06, 0.14),
        vessel_seed=int(rng.integers(2**31)),
    )


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _soft(inside: np.ndarray, width: float) -> np.ndarray:
    """Soft indicator of `inside > 0` (a signed distance-like field), ramp of `width`."""
    return _smoothstep(0.5 + inside / width)


def _lung_field(u, v, a: Anatomy, side: int) -> np.ndarray:
    """Signed insideness of one lung (image left = patient's right): narrow apex, wide base,
    flat-ish medial edge, cardiac notch on the patient's left, cut by the diaphragm dome."""
    top = a.dome - a.lung_h
    t = np.clip((v - top) / a.lung_h, 0.0, 1.2)  # 0 apex .. 1 base
    half = a.lung_w * (0.45 + 0.55 * np.sqrt(np.clip(t / 0.6, 0, 1)))
    cx = side * (a.lung_gap + a.lung_w)
    inside = 1.0 - np.abs(u - cx) / half
    dome = a.dome - 0.09 * np.cos(np.clip((u - cx) / a.lung_w, -1.6, 1.6))
    inside = np.minimum(inside, (dome - v) / 0.1)
    inside = np.minimum(inside, (v - top) / 0.12)
    if side > 0:  # cardiac notch
        notch = 0.55 * np.exp(-((v - (a.dome - 0.18)) / 0.22) ** 2) * np.exp(-((u - a.lung_gap) / 0.18) ** 2)
        inside = inside - notch
    return inside


def draw_image(a: Anatomy, size: int, rng: np.random.Generator, opacities: int,
               jitter: float = 1.0) -> np.ndarray:
    """One radiograph [size, size] uint8 of anatomy `a` with `opacities` disease patches."""
    shift_u, shift_v = rng.normal(0, 0.03 * jitter, 2)
    angle = rng.normal(0, 0.03 * jitter)
    v, u = np.mgrid[-1:1:size * 1j, -1:1:size * 1j].astype(np.float32)
    u, v = ((u - shift_u) * np.cos(angle) - (v - shift_v) * np.sin(angle),
            (u - shift_u) * np.sin(angle) + (v - shift_v) * np.cos(angle))
    px = 2.0 / size

    # body: torso (rounded shoulders) and neck
    torso = 1.0 - (np.abs(u) / a.torso) ** 4 - (np.clip(-(v + 0.55), 0, None) / 0.35) ** 2
    neck = 0.17 - np.abs(u)
    body = np.maximum(_soft(torso, 0.08), _soft(neck, 5 * px) * (v < -0.5))
    density = 0.06 + 0.58 * body + 0.10 * body * _smoothstep((0.7 - np.abs(u) / a.torso) / 0.7)

    # spine
    density += 0.10 * _soft(0.055 - np.abs(u), 4 * px) * body

    lung = np.maximum(_soft(_lung_field(u, v, a, -1), 0.04), _soft(_lung_field(u, v, a, 1), 0.04))
    density -= 0.42 * lung

    # heart and mediastinum shadow over the medial lungs
    hr = 0.25 * a.heart
    heart = _soft(1 - np.hypot((u - 0.08) / (1.3 * hr), (v - (a.dome - 0.15)) / hr), 0.3)
    density += 0.22 * heart * lung

    # ribs: posterior arcs sloping down laterally, clearest over the lungs
    cage = _soft(a.torso - 0.08 - np.abs(u), 6 * px) * _soft(a.dome + 0.05 - v, 6 * px)
    arc = v - 0.30 * u ** 2 - (a.dome - a.lung_h - 0.1)
    phase = arc / a.rib_spacing + a.rib_phase
    rib = np.exp(-((phase - np.round(phase)) / 0.18) ** 2) * (phase > 0.3)
    density += 0.09 * rib * cage * (0.35 + 0.65 * lung)

    # clavicles
    for side in (-1, 1):
        x = u * side
        clav = v - (a.dome - a.lung_h - 0.08 + 0.10 * (x - 0.35) ** 2)
        density += 0.10 * np.exp(-(clav / 0.025) ** 2) * _soft(0.32 - np.abs(x - 0.38), 4 * px)

    # breast shadows over the lower lateral lung fields
    if a.breast > 0:
        for side in (-1, 1):
            d = np.hypot((u - side * 0.45) / 0.34, (v - (a.dome - 0.05)) / 0.28)
            density += a.breast * _soft(1 - d, 0.5) * body

    # lung texture: vessels radiating from the hila (fixed per patient)
    vrng = np.random.default_rng(a.vessel_seed)
    texture = ndimage.zoom(vrng.normal(size=(20, 20)).astype(np.float32), size / 20, order=3)[:size, :size]
    hilum = np.exp(-(np.minimum(np.hypot(u + 0.17, v), np.hypot(u - 0.17, v)) / 0.4) ** 2)
    density += 0.03 * texture * lung * (0.4 + hilum)

    # disease: patchy opacities in a lung, of random size, place and strength
    for _ in range(opacities):
        side = rng.choice((-1, 1))
        cu = side * (a.lung_gap + a.lung_w * rng.uniform(0.5, 1.5))
        cv = rng.uniform(a.dome - a.lung_h * 0.8, a.dome - 0.12)
        radius = rng.uniform(*OPACITY_RADIUS)
        strength = rng.uniform(*OPACITY_STRENGTH)
        blob = np.exp(-(np.hypot(u - cu, (v - cv) * rng.uniform(0.7, 1.4)) / radius) ** 2)
        mottle = 1 + 0.4 * ndimage.zoom(rng.normal(size=(16, 16)).astype(np.float32), size / 16, order=1)[:size, :size]
        density += strength * blob * mottle * lung

    # exposure: contrast and brightness vary per image, then blur and quantum-like noise
    density = ndimage.gaussian_filter(density, sigma=0.6 * size / 256)
    gain = rng.normal(215, 12)
    offset = rng.normal(5, 4)
    gamma = float(np.clip(rng.normal(1.0, 0.06), 0.8, 1.2))
    grey = offset + gain * np.clip(density, 0, None) ** gamma
    grey += rng.normal(0, 2.5, size=grey.shape).astype(np.float32)
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)

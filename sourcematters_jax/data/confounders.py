"""The study's confounders, as pure functions on full-resolution grayscale uint8 images.

Each function takes a 2-D uint8 array [H, W] and returns a new uint8 array; the input is never
modified. Parameters default to the study's values for a 1024 px NIH radiograph and scale with the
image size, so the same code runs on the 256 px synthetic radiographs. The study's scripts
(github.com/DovileDo/source-matters: include_tag.py, include_lowpass.py, include_noise.py; MIT)
define the procedures; where they were unseeded, the functions here take an explicit seed.

  add_tag     the letter "R" in white, DejaVu Sans 64 px, anchor (200, 200) (PIL's default
              left-ascender anchor, as the study's `ImageDraw.text` call)
  low_pass    ideal circular low-pass filter of diameter 500 in the centred 2-D spectrum
  xray_noise  bilinear resize to 512 px, then the photon-count (Poisson) pipeline with N photons
  ct_noise    low-dose CT simulation: Poisson noise on the parallel-beam sinogram, filtered
              back-projection (the study's CT procedure is unpublished; see docs/datasets.md)
  resize_nearest  PIL nearest-neighbour resize, what Keras' `load_img(target_size=...)` does
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
from typing import Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

REFERENCE_SIZE = 1024  # the NIH radiographs the study's pixel parameters were chosen for
TAG_LETTER = "R"
TAG_FONT_SIZE = 64
TAG_POSITION = (200, 200)  # (x, y) of the text anchor, PIL default anchor 'la'
LOW_PASS_DIAMETER = 500
NOISE_SIZE = 512  # include_noise.py resizes every radiograph to 512x512 before the noise
PHOTONS_BASE = 2e7  # every image of the X-ray noise experiment
PHOTONS_CONFOUNDED = 1.5e7  # the confounded images instead
MU_WATER = 0.1837
MU_AIR = 0.1662
DISP_WINDOW = (-1200.0, 800.0)  # HU range that grey levels 0..255 map onto



def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"{name} must be a 2-D uint8 grayscale array, got {image.dtype} {image.shape}")
    return image


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _scaled(value: float, size: int) -> int:
    """A pixel parameter of the 1024 px protocol, scaled to an image side of `size` px."""
    return int(round(value * size / REFERENCE_SIZE))


def default_font_path() -> pathlib.Path:
    """DejaVu Sans as shipped inside matplotlib (its default sans-serif).

    The study called `findfont(FontProperties(family='sans-serif', weight='light'))`. With only
    matplotlib's bundled fonts that resolves to this regular-weight file (there is no light
    DejaVu Sans in matplotlib); a system with the fonts-dejavu-extra package would resolve it to
    DejaVuSans-ExtraLight.ttf instead. Taking the bundled file makes the tag identical on every
    machine; pass `font_path` to `add_tag` to use another face.
    """
    path = pathlib.Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not path.is_file():
        raise FileNotFoundError(f"matplotlib's DejaVu Sans is missing: {path}")
    return path


TAG_FONTS = ("bundled", "study_call")  # or a path to a TrueType file


def study_call_font_path() -> pathlib.Path:
    """What the study's `findfont(FontProperties(family='sans-serif', weight='light'))` returns here.

    DejaVuSans-ExtraLight.ttf on a machine with the common DejaVu fonts (fonts-dejavu-extra),
    matplotlib's bundled DejaVuSans.ttf (Book) without them: the tag then differs (docs/datasets.md).
    """
    from matplotlib.font_manager import FontProperties, findfont

    return pathlib.Path(findfont(FontProperties(family="sans-serif", weight="light")))


def resolve_font(spec: str | None) -> pathlib.Path:
    """The TrueType file of a tag-font setting: 'bundled' (default), 'study_call' or a path.

    Raises FileNotFoundError naming the setting when a path does not exist.
    """
    spec = spec or "bundled"
    if spec == "bundled":
        return default_font_path()
    if spec == "study_call":
        return study_call_font_path()
    path = pathlib.Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"tag_font={spec!r}: expected 'bundled', 'study_call' or an existing "
                                f"TrueType file")
    return path.absolute()


@functools.lru_cache(maxsize=16)
def _sha256(path: str, mtime_ns: int) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def font_record(spec: str | None) -> dict[str, str]:
    """{'setting', 'path', 'sha256', 'name'} of the resolved tag font, for dataset metadata."""
    path = resolve_font(spec)
    family, style = ImageFont.truetype(str(path), 10).getname()
    return {"setting": spec or "bundled", "path": str(path),
            "sha256": _sha256(str(path), path.stat().st_mtime_ns), "name": f"{family} {style}"}


@functools.lru_cache(maxsize=32)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def add_tag(
    image: np.ndarray,
    *,
    letter: str = TAG_LETTER,
    font_size: int | None = None,
    position: Sequence[int] | None = None,
    scale: float = 1.0,
    font_path: str | pathlib.Path | None = None,
) -> np.ndarray:
    """Draws `letter` in white (255) onto a copy of `image`, exactly as include_tag.py did.

    Args:
      image: uint8 [H, W].
      letter: the text to draw.
      font_size: glyph size in pixels; default 64 * W / 1024 * scale.
      position: (x, y) of PIL's default 'la' (left, ascender) anchor; default (200, 200) * W / 1024.
      scale: extra factor on the default font size (and on nothing else). 1.0 is the study; the
        synthetic demo uses a larger letter so that it survives downsampling to 64 px.
      font_path: a TrueType file; default matplotlib's DejaVu Sans (see `default_font_path`).
    """
    image = _check_image(image)
    font, position = _tag_geometry(image.shape, font_size, position, scale, font_path)
    canvas = Image.fromarray(image, mode="L")
    ImageDraw.Draw(canvas).text(position, letter, font=font, fill=255)
    return np.asarray(canvas, dtype=np.uint8).copy()


def _tag_geometry(shape: tuple[int, int], font_size: int | None, position: Sequence[int] | None,
                  scale: float, font_path: str | pathlib.Path | None
                  ) -> tuple[ImageFont.FreeTypeFont, tuple[int, int]]:
    """(font, anchor position) `add_tag` uses on an image of `shape` (its defaults, scaled)."""
    h, w = shape
    if font_size is None:
        font_size = max(1, int(round(TAG_FONT_SIZE * w / REFERENCE_SIZE * scale)))
    if position is None:
        position = (_scaled(TAG_POSITION[0], w), _scaled(TAG_POSITION[1], h))
    font = _font(str(font_path or default_font_path()), int(font_size))
    return font, (int(position[0]), int(position[1]))


def tag_box(shape: tuple[int, int] = (REFERENCE_SIZE, REFERENCE_SIZE), *, letter: str = TAG_LETTER,
            scale: float = 1.0, font_path: str | pathlib.Path | None = None
            ) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) pixel box (right/bottom exclusive) that `add_tag` draws into.

    PIL's `textbbox` of the same letter, font and anchor that `add_tag(image, letter=letter,
    scale=scale)` uses on an image of `shape` (H, W): every pixel the tag changes lies inside.
    Divide by the side to get the box as a fraction of the image, e.g. for a resized pool.
    """
    font, position = _tag_geometry(tuple(shape), None, None, scale, font_path)
    canvas = ImageDraw.Draw(Image.new("L", (shape[1], shape[0])))
    left, top, right, bottom = canvas.textbbox(position, letter, font=font)
    return int(left), int(top), int(right), int(bottom)


@functools.lru_cache(maxsize=8)
def low_pass_mask(height: int, width: int, diameter: float) -> np.ndarray:
    """The study's filter: a centred filled disk (1 inside, 0 outside), drawn by PIL's ellipse.

    include_lowpass.py drew it with `ImageDraw.ellipse(((x-e)/2, (y-e)/2, (x+e)/2, (y+e)/2))` on a
    PIL canvas; drawing it the same way keeps the rasterised boundary pixel-identical.
    """
    mask = Image.new("L", (width, height), color=0)
    box = (width / 2 - diameter / 2, height / 2 - diameter / 2,
           width / 2 + diameter / 2, height / 2 + diameter / 2)
    ImageDraw.Draw(mask).ellipse(box, fill=1)
    out = np.asarray(mask, dtype=np.float64)
    out.setflags(write=False)
    return out


def low_pass(image: np.ndarray, *, diameter: float | None = None) -> np.ndarray:
    """Ideal low-pass filter: keep the spatial frequencies inside a centred disk.

    2-D FFT, fftshift, multiply by the disk, inverse shift and FFT, real part, clip to [0, 255],
    truncate to uint8 (include_lowpass.py). `diameter` defaults to 500 * min(H, W) / 1024.
    """
    image = _check_image(image)
    h, w = image.shape
    if diameter is None:
        diameter = LOW_PASS_DIAMETER * min(h, w) / REFERENCE_SIZE
    spectrum = np.fft.fftshift(np.fft.fft2(image.astype(np.float64)))
    filtered = spectrum * low_pass_mask(h, w, float(diameter))
    out = np.real(np.fft.ifft2(np.fft.ifftshift(filtered)))
    return np.clip(out, 0, 255).astype(np.uint8)


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV's `cv2.resize(image, (w, h))` (INTER_LINEAR, half-pixel centres, no antialiasing).

    The study resized with OpenCV before adding X-ray noise; for an exact 2x reduction this is the
    mean of each 2x2 block. Output rounded to uint8 as OpenCV does.
    """
    image = _check_image(image)
    out_h, out_w = size
    src = image.astype(np.float64)

    def coords(n_out, n_in):
        x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        x = np.clip(x, 0, n_in - 1)
        lo = np.floor(x).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, x - lo

    y0, y1, fy = coords(out_h, image.shape[0])
    x0, x1, fx = coords(out_w, image.shape[1])
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    out = top * (1 - fy)[:, None] + bottom * fy[:, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def resize_nearest(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """PIL nearest-neighbour resize to `size` (side, or (height, width)), as Keras' load_img did."""
    image = _check_image(image)
    h, w = (size, size) if isinstance(size, int) else size
    if (h, w) == image.shape:
        return image.copy()
    return np.asarray(Image.fromarray(image, mode="L").resize((w, h), Image.Resampling.NEAREST))


def photon_noise(grey: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    """The study's photon-count pipeline on a float grey image (no resize); returns uint8.

    grey + U(0, 1) -> HU in DISP_WINDOW -> attenuation mu -> Poisson(exp(-mu) N) / N ->
    -log(max(1e-8, .)) -> HU -> clip to DISP_WINDOW -> grey, truncated to uint8.
    """
    lo, hi = DISP_WINDOW
    g = np.asarray(grey, np.float64) + rng.uniform(0.0, 1.0, size=np.shape(grey))
    hu = g / 255.0 * (hi - lo) + lo
    mu = hu * (MU_WATER - MU_AIR) / 1000 + MU_WATER
    counts = rng.poisson(np.exp(-mu) * photons) / photons
    proj = -np.log(np.maximum(1e-8, counts))
    recon = np.clip(1000 * (proj - MU_WATER) / (MU_WATER - MU_AIR), lo, hi)
    return ((recon - lo) / (hi - lo) * 255.0).astype(np.uint8)


def xray_noise(
    image: np.ndarray,
    photons: float,
    seed,
    *,
    size: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """Simulated X-ray quantum noise at `photons` per pixel (include_noise.py).

    Resizes to `size` first (bilinear, as cv2.resize; default 512 * side / 1024, i.e. 512 px for
    an NIH radiograph; pass the image's own shape to skip it), then `photon_noise`. The output has
    the resized shape. `seed` (int, SeedSequence or Generator) makes it deterministic: the study
    drew from two global RandomStates (666, 888) in file order, which cannot be reproduced per
    image.
    """
    image = _check_image(image)
    if photons <= 0:
        raise ValueError(f"photons must be positive, got {photons}")
    if size is None:
        size = (_scaled(NOISE_SIZE, image.shape[0]), _scaled(NOISE_SIZE, image.shape[1]))
    elif isinstance(size, int):
        size = (size, size)
    small = image if tuple(size) == image.shape else resize_bilinear(image, tuple(size))
    return photon_noise(small, photons, _rng(seed))


def radon(image: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Parallel-beam projections [n_angles, n_det] of a square float image (rotate and sum).

    The image is zero-padded to its diagonal so that no mass leaves the field while rotating.
    """
    n = image.shape[0]
    pad = int(np.ceil(n * np.sqrt(2))) - n
    padded = np.pad(image, ((pad // 2, pad - pad // 2),) * 2)
    return np.stack([ndimage.rotate(padded, -a, reshape=False, order=1).sum(axis=0)
                     for a in angles_deg])


def iradon(sinogram: np.ndarray, angles_deg: np.ndarray, size: int) -> np.ndarray:
    """Filtered back-projection (Ram-Lak ramp filter) of `radon`'s output, cropped to `size`."""
    n_angles, n_det = sinogram.shape
    n_fft = int(2 ** np.ceil(np.log2(2 * n_det)))
    ramp = 2 * np.abs(np.fft.fftfreq(n_fft))
    filtered = np.real(np.fft.ifft(np.fft.fft(sinogram, n_fft, axis=1) * ramp, axis=1))[:, :n_det]
    centre = (n_det - 1) / 2
    ys, xs = np.mgrid[:n_det, :n_det] - centre
    recon = np.zeros((n_det, n_det))
    det = np.arange(n_det)
    for row, a in zip(filtered, np.deg2rad(angles_deg)):
        t = xs * np.cos(a) + ys * np.sin(a) + centre
        recon += np.interp(t, det, row, left=0.0, right=0.0)
    recon *= np.pi / (2 * n_angles)
    start = (n_det - size) // 2
    return recon[start:start + size, start:start + size]


def ct_noise(
    image: np.ndarray,
    photons: float,
    seed,
    *,
    pixel_size_cm: float = 0.07,
    n_angles: int = 180,
) -> np.ndarray:
    """Low-dose CT noise on a CT crop (grey levels = HU in DISP_WINDOW): sinogram-domain Poisson.

    The crop's attenuation map (mu per cm x pixel size) is projected over `n_angles` parallel-beam
    angles; each detector reading becomes Poisson(N exp(-p)) / N; the noisy and the noise-free
    sinograms are both reconstructed by filtered back-projection and the difference (the noise) is
    added to the input image, so that only the noise, not the reconstruction blur, distinguishes
    the variants. Fewer photons means more noise. The study used a CT noise confounder but did not
    publish its procedure; this follows the LoDoPaB-CT simulation its X-ray code was derived from.
    """
    image = _check_image(image)
    if image.shape[0] != image.shape[1]:
        raise ValueError(f"ct_noise needs a square crop, got {image.shape}")
    if photons <= 0:
        raise ValueError(f"photons must be positive, got {photons}")
    rng = _rng(seed)
    lo, hi = DISP_WINDOW
    hu = image.astype(np.float64) / 255.0 * (hi - lo) + lo
    mu = np.maximum(hu * (MU_WATER - MU_AIR) / 1000 + MU_WATER, 0.0) * pixel_size_cm
    angles = np.arange(n_angles) * 180.0 / n_angles
    sino = radon(mu, angles)
    noisy = -np.log(np.maximum(rng.poisson(np.exp(-sino) * photons), 1) / photons)
    noise_mu = iradon(noisy - sino, angles, image.shape[0]) / pixel_size_cm
    noise_hu = noise_mu * 1000 / (MU_WATER - MU_AIR)
    out = np.clip(hu + noise_hu, lo, hi)
    return ((out - lo) / (hi - lo) * 255.0).astype(np.uint8)

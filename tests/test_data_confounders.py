"""The confounders against the study's own procedures (github.com/DovileDo/source-matters, MIT).

`_study_*` below transcribe include_lowpass.py, include_tag.py and include_noise.py (Copyright (c)
2024 DovileDo, MIT licence) as references; the project's functions are compared with them on a
1024 px radiograph-like image.
"""

import copy

import matplotlib
import numpy as np
import pytest
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont
from scipy import fftpack

from sourcematters_jax.data import confounders, synthetic_images


@pytest.fixture(scope="module")
def radiograph():
    rng = np.random.default_rng(3)
    return synthetic_images.draw_image(synthetic_images.sample_anatomy(rng, "F"), 1024, rng, opacities=2)


def _study_low_pass(image, e):  # include_lowpass.py, low_pass()
    fft1 = fftpack.fftshift(fftpack.fft2(image))
    x, y = image.shape[0], image.shape[1]
    bbox = ((x / 2) - (e / 2), (y / 2) - (e / 2), (x / 2) + (e / 2), (y / 2) + (e / 2))
    low_pass = Image.new("L", (image.shape[0], image.shape[1]), color=0)
    ImageDraw.Draw(low_pass).ellipse(bbox, fill=1)
    filtered = np.multiply(fft1, np.array(low_pass))
    ifft2 = np.real(fftpack.ifft2(fftpack.ifftshift(filtered)))
    return np.maximum(0, np.minimum(ifft2, 255)).astype(np.uint8)


def _study_tag(image, font_file):  # include_tag.py, chest14: font_size 64, at (200, 200)
    img = Image.fromarray(image)
    ImageDraw.Draw(img).text((200, 200), "R", font=ImageFont.truetype(font_file, 64), fill="white")
    return np.asarray(img)


def _study_noise(img, photons, r_quantize, r_poisson):  # include_noise.py, noise()
    mu_water, mu_air, window = 0.1837, 0.1662, [-1200, 800]
    img = img + r_quantize.uniform(0.0, 1.0, size=img.shape)
    img = img / 255.0 * (window[1] - window[0]) + window[0]
    img = img * (mu_water - mu_air) / 1000 + mu_water
    proj = r_poisson.poisson(np.exp(-img) * photons) / photons
    proj = -np.log(np.maximum(1e-8, proj))
    recon = np.clip(1000 * (proj - mu_water) / (mu_water - mu_air), window[0], window[1])
    return ((recon - window[0]) / (window[1] - window[0]) * 255.0).astype(np.uint8)


def test_low_pass_is_pixel_exact_against_the_study(radiograph):
    ours = confounders.low_pass(radiograph)
    np.testing.assert_array_equal(ours, _study_low_pass(radiograph, 500))
    assert ours.std() < radiograph.std()  # it did smooth something
    assert np.abs(ours.astype(int) - radiograph).mean() > 0.5


def test_low_pass_mask_is_the_drawn_disk():
    mask = confounders.low_pass_mask(1024, 1024, 500.0)
    assert mask[512, 512] == 1 and mask[0, 0] == 0
    area = mask.sum()
    assert abs(area - np.pi * 250 ** 2) / (np.pi * 250 ** 2) < 0.01
    # diameter scales with the image: 500 px at 1024 -> 125 px at 256
    small = np.zeros((256, 256), np.uint8)
    confounders.low_pass(small)
    assert confounders.low_pass_mask(256, 256, 125.0).sum() == pytest.approx(np.pi * 62.5 ** 2, rel=0.03)


def test_tag_draws_the_studys_glyph(radiograph):
    ours = confounders.add_tag(radiograph)
    np.testing.assert_array_equal(ours, _study_tag(radiograph, str(confounders.default_font_path())))
    changed = np.argwhere(ours != radiograph)
    (y0, x0), (y1, x1) = changed.min(0), changed.max(0)
    # 'R' of a 64 px DejaVu Sans: ink starts a few px right of x=200 and below y=200 (ascender
    # anchor), about 46 px tall and 40 px wide
    assert 200 <= x0 <= 215 and 200 <= y0 <= 220
    assert 40 <= y1 - y0 <= 52 and 30 <= x1 - x0 <= 45
    assert ours.max() == 255 and (ours == 255).sum() > 300
    assert (ours >= radiograph).all()  # white ink only brightens
    np.testing.assert_array_equal(radiograph, radiograph.copy())  # input untouched


def test_tag_font_is_what_the_studys_findfont_gives_with_matplotlib_fonts_only():
    fm = copy.copy(font_manager.fontManager)
    mpl_fonts = str(matplotlib.get_data_path())
    fm.ttflist = [f for f in fm.ttflist if f.fname.startswith(mpl_fonts)]
    found = fm.findfont(font_manager.FontProperties(family="sans-serif", weight="light"),
                        rebuild_if_missing=False)
    assert found.endswith("DejaVuSans.ttf")
    assert str(confounders.default_font_path()) == found


def test_tag_scales_with_image_size():
    blank = np.zeros((256, 256), np.uint8)
    tagged = np.argwhere(confounders.add_tag(blank))
    (y0, x0), (y1, x1) = tagged.min(0), tagged.max(0)
    assert 50 <= x0 <= 55 and 50 <= y0 <= 56 and 9 <= y1 - y0 <= 14 and 6 <= x1 - x0 <= 12  # 16 px R at (50, 50)
    bigger = np.argwhere(confounders.add_tag(blank, scale=3.0))
    assert (bigger.max(0) - bigger.min(0))[0] >= 3 * (y1 - y0) - 3


def test_synthetic_tag_survives_the_resize_to_64px():
    rng = np.random.default_rng(0)
    image = synthetic_images.draw_image(synthetic_images.sample_anatomy(rng, "M"), 256, rng, 0)
    seen = confounders.resize_nearest(confounders.add_tag(image, scale=3.0), 64)
    assert (seen != confounders.resize_nearest(image, 64)).sum() >= 20


def test_xray_noise_statistics_match_the_study():
    flat = np.full((1024, 1024), 128, np.uint8)
    ours_base = confounders.xray_noise(flat, 2e7, seed=1).astype(float)
    ours_conf = confounders.xray_noise(flat, 1.5e7, seed=2).astype(float)
    assert ours_base.shape == (512, 512)
    small = flat[:512, :512].astype(np.float64)
    ref_base = _study_noise(small, 2e7, np.random.RandomState(666), np.random.RandomState(888)).astype(float)
    ref_conf = _study_noise(small, 1.5e7, np.random.RandomState(666), np.random.RandomState(888)).astype(float)
    for ours, ref, sd in ((ours_base, ref_base, 1.83), (ours_conf, ref_conf, 2.10)):
        assert ours.mean() == pytest.approx(ref.mean(), abs=0.02)
        assert ours.std() == pytest.approx(ref.std(), rel=0.02)
        assert ours.std() == pytest.approx(sd, rel=0.03)  # PROTOCOL: about 1.8 vs 2.1 grey levels
    assert ours_conf.std() > ours_base.std() * 1.1


def test_xray_noise_is_seeded_and_scales_its_resize():
    image = np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8)
    a = confounders.xray_noise(image, 2e7, seed=5)
    np.testing.assert_array_equal(a, confounders.xray_noise(image, 2e7, seed=5))
    assert (a != confounders.xray_noise(image, 2e7, seed=6)).any()
    assert a.shape == (128, 128)  # 512 px at 1024 -> 128 px at 256
    assert confounders.xray_noise(image, 2e7, seed=5, size=image.shape).shape == (256, 256)


def test_bilinear_resize_is_opencvs_for_halving():
    image = np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)
    blocks = image.reshape(32, 2, 32, 2).astype(float).mean(axis=(1, 3))
    np.testing.assert_array_equal(confounders.resize_bilinear(image, (32, 32)), np.floor(blocks + 0.5))


def test_nearest_resize_samples_pixel_centres_like_pil():
    image = np.arange(64 * 64, dtype=np.int64).reshape(64, 64) % 251
    image = image.astype(np.uint8)
    out = confounders.resize_nearest(image, 16)
    centres = ((np.arange(16) + 0.5) * 4).astype(int)
    np.testing.assert_array_equal(out, image[np.ix_(centres, centres)])
    assert confounders.resize_nearest(image, (64, 64)) is not image


def test_ct_noise_levels_and_determinism():
    crop = np.full((32, 32), 45, np.uint8)
    crop[10:22, 10:22] = 140
    strong = confounders.ct_noise(crop, 2e5, seed=1).astype(float) - crop
    weak = confounders.ct_noise(crop, 2e6, seed=1).astype(float) - crop
    assert 1.0 < weak.std() < strong.std()
    assert strong.std() == pytest.approx(weak.std() * np.sqrt(10), rel=0.25)  # SD ~ 1/sqrt(photons)
    np.testing.assert_array_equal(confounders.ct_noise(crop, 2e5, seed=1), confounders.ct_noise(crop, 2e5, seed=1))
    assert (confounders.ct_noise(crop, 2e5, seed=2) != confounders.ct_noise(crop, 2e5, seed=1)).any()


def test_radon_and_fbp_invert_each_other():
    yy, xx = np.mgrid[:32, :32] - 15.5
    disk = (np.hypot(yy, xx) < 8).astype(float)
    angles = np.arange(90) * 2.0
    recon = confounders.iradon(confounders.radon(disk, angles), angles, 32)
    assert np.abs(recon - disk)[np.hypot(yy, xx) < 5].mean() < 0.1
    assert np.abs(recon - disk)[np.hypot(yy, xx) > 11].mean() < 0.1


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.float32), np.zeros((8, 8, 3), np.uint8)])
def test_confounders_reject_non_grayscale_uint8(bad):
    for fn in (confounders.add_tag, confounders.low_pass, lambda x: confounders.xray_noise(x, 1e7, 0)):
        with pytest.raises(ValueError, match="2-D uint8"):
            fn(bad)

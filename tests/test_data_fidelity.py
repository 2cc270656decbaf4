"""Fidelity options of the data (issue 16): the study's p = 0 runs for X-ray noise, cross-confounder
o.o.d. tests, the study's shared confounder draw, the tag font, and the low-pass confounder at the
model resolution.

The synthetic dataset is built once per module at 16 px; the split options (extra_ood,
p0_protocol, confound_draw) reuse that one build, the font options build their own.
"""

import hashlib
import pathlib

import matplotlib
import numpy as np
import pytest
from matplotlib.font_manager import FontProperties, findfont

from sourcematters_jax.data import confounders, experiment, selection
from sourcematters_jax.data import synthetic_images
from sourcematters_jax.data.types import CONFOUNDED, ImagePool
from sourcematters_jax.members import P_ART_GRID

SIZE = 16
BOLD = pathlib.Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fidelity") / "tfds"


def load(tfds_dir, name, **options):
    return experiment.load_experiment(name, dataset="synthetic_cxr", data_dir=tfds_dir, image_size=SIZE,
                                      **options)


def gathered(pool: ImagePool, split):
    """The images a member sees for a split: what step.gather takes from the device pool."""
    return pool.images[split.indices, np.where(split.confounded, CONFOUNDED, 0)]


def by_name(data, variant: int):
    """File name -> the experiment block's image of that variant."""
    n = data.membership.shape[0]
    return {name: data.pool.images[i, variant] for i, name in enumerate(data.pool.names[:n])}


def test_xray_noise_p0_members_train_on_clean_images_under_the_study_protocol(tfds_dir):
    study = load(tfds_dir, "xray_noise")  # p0_protocol='clean' is the default
    assert study.options.p0_protocol == "clean"
    clean = by_name(load(tfds_dir, "tag"), 0)
    noisy = by_name(study, 0)
    p0 = study.member_data(0.0, 1, 812)
    for split in ("train", "val", "test_iid"):
        s = getattr(p0, split)
        images = gathered(study.pool, s)
        names = [study.pool.names[i] for i in s.indices]
        np.testing.assert_array_equal(images, np.stack([clean[n] for n in names]))
        assert not np.array_equal(images, np.stack([noisy[n] for n in names]))
    # the o.o.d. test keeps the noise: base noise on positives, the confounded level on negatives
    ood = p0.test_ood
    assert ood.indices.max() < study.membership.shape[0]
    np.testing.assert_array_equal(ood.confounded, study.pool.labels[ood.indices] == 0)
    # p_art > 0 members train on the noise images; the same member under 'base_noise' for p = 0
    p1 = study.member_data(0.1, 1, 812)
    assert p1.train.indices.max() < study.membership.shape[0] and p1.train.confounded.any()
    old = load(tfds_dir, "xray_noise", p0_protocol="base_noise").member_data(0.0, 1, 812)
    np.testing.assert_array_equal(old.train.indices + study.blocks["clean"], p0.train.indices)
    images = gathered(study.pool, old.train)
    np.testing.assert_array_equal(images, np.stack([noisy[study.pool.names[i]] for i in old.train.indices]))


def test_extra_ood_tests_carry_the_other_confounders(tfds_dir):
    tag = load(tfds_dir, "tag", extra_ood=("denoising", "xray_noise"))
    m = tag.member_data(0.5, 2, 812)
    assert list(m.extra_tests) == ["test_ood_denoising", "test_ood_xray_noise"]
    sources = {"denoising": load(tfds_dir, "denoising"), "xray_noise": load(tfds_dir, "xray_noise")}
    for name, other in sources.items():
        split = m.extra_tests[f"test_ood_{name}"]
        expected = other.member_data(0.5, 2, 812).test_ood  # that experiment's own o.o.d. test
        images = gathered(tag.pool, split)
        np.testing.assert_array_equal(images, gathered(other.pool, expected))
        np.testing.assert_array_equal(split.confounded, expected.confounded)
        assert [tag.pool.names[i] for i in split.indices] == [other.pool.names[i] for i in expected.indices]
    assert tag.pool.metadata["blocks"]["denoising"][1:] == ["clean", "lowpass"]
    # the member's own splits are unchanged by the extra blocks
    plain = load(tfds_dir, "tag").member_data(0.5, 2, 812)
    for split in ("train", "val", "test_iid", "test_ood", "test_clean"):
        np.testing.assert_array_equal(getattr(plain, split).indices, getattr(m, split).indices)
        np.testing.assert_array_equal(getattr(plain, split).confounded, getattr(m, split).confounded)


def test_split_options_name_what_is_wrong(tfds_dir):
    with pytest.raises(ValueError, match="extra_ood.*'tag'"):
        load(tfds_dir, "tag", extra_ood="tag")
    with pytest.raises(ValueError, match="extra_ood.*sex"):
        load(tfds_dir, "sex", extra_ood="tag")
    with pytest.raises(ValueError, match="p0_protocol.*'xray_noise' only"):
        load(tfds_dir, "tag", p0_protocol="clean")
    with pytest.raises(ValueError, match="p0_protocol='noisy'"):
        load(tfds_dir, "xray_noise", p0_protocol="noisy")
    with pytest.raises(ValueError, match="confound_draw='once'"):
        load(tfds_dir, "tag", confound_draw="once")


def test_shared_draw_is_one_selection_for_every_fold(tfds_dir):
    shared = load(tfds_dir, "tag", confound_draw="shared")
    labels, n = shared.pool.labels, shared.membership.shape[0]
    n_pos = int(labels[:n].sum())
    previous = set()
    for p in P_ART_GRID:
        chosen = set()
        for fold in range(1, 6):
            m = shared.member_data(p, fold, 812)
            for split in (m.train, m.val, m.test_iid):
                conf = set(split.indices[split.confounded])
                assert all(labels[i] == 1 for i in conf)
                chosen |= conf
            mask = selection.shared_confounded(labels[:n], p, 812)
            for split in (m.train, m.val, m.test_iid):  # every fold takes the same draw
                np.testing.assert_array_equal(split.confounded, mask[split.indices])
        assert chosen == set(np.flatnonzero(mask)) and len(chosen) == selection.n_confounded(p, n_pos)
        assert previous <= chosen  # nested across p_art
        previous = chosen
    # per member (the default), folds draw differently and each split is exact
    per = load(tfds_dir, "tag")
    a, b = per.member_data(0.5, 1, 812), per.member_data(0.5, 2, 812)
    common = np.intersect1d(a.train.indices, b.train.indices)
    pick = lambda m: set(m.train.indices[m.train.confounded]) & set(common)  # noqa: E731
    assert pick(a) != pick(b)
    assert shared.member_data(0.5, 1, 1).train.confounded.tolist() != \
        shared.member_data(0.5, 1, 812).train.confounded.tolist()


def test_tag_font_changes_the_built_images_and_is_recorded(tfds_dir):
    bundled = load(tfds_dir, "tag")
    bold = load(tfds_dir, "tag", tag_font=str(BOLD))
    record = bold.pool.metadata["tag_font"]
    assert record["path"] == str(BOLD)
    assert record["sha256"] == hashlib.sha256(BOLD.read_bytes()).hexdigest()
    assert record["name"] == "DejaVu Sans Bold"
    assert bundled.pool.metadata["tag_font"]["path"] == str(confounders.default_font_path())
    tagged = lambda d: d.pool.images[:, 1]  # noqa: E731
    assert not np.array_equal(tagged(bundled), tagged(bold))
    np.testing.assert_array_equal(bundled.pool.images[:, 0], bold.pool.images[:, 0])  # clean unchanged
    # different fonts never share a build directory
    names = {experiment.make_builder("tag", dataset="synthetic_cxr", data_dir=tfds_dir, image_size=SIZE,
                                     tag_font=f).builder_config.name for f in ("bundled", str(BOLD))}
    assert len(names) == 2
    with pytest.raises(FileNotFoundError, match="tag_font='/no/such.ttf'"):
        confounders.resolve_font("/no/such.ttf")


def test_study_call_font_is_the_studys_findfont():
    path = confounders.resolve_font("study_call")
    assert path == pathlib.Path(findfont(FontProperties(family="sans-serif", weight="light")))
    record = confounders.font_record("study_call")
    assert record["setting"] == "study_call"
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    image = np.zeros((1024, 1024), np.uint8)
    for spec in ("study_call", str(BOLD)):  # a face other than the bundled one draws another letter
        if confounders.resolve_font(spec) != confounders.default_font_path():
            assert not np.array_equal(confounders.add_tag(image, font_path=confounders.resolve_font(spec)),
                                      confounders.add_tag(image))


@pytest.mark.parametrize("size", [224, 512])
def test_low_pass_is_still_visible_at_the_model_size(size):
    """At 224 px the cut (250 cycles per image) lies above the 112-cycle Nyquist limit, yet the
    nearest resize keeps a measurable difference: about 1.9 grey levels per pixel on 1024 px
    synthetic radiographs (sd 2.4), most pixels changed; the visible part is the filter's ringing
    and the truncation, not a loss of the resized image's own high frequencies (those drop by a
    few percent at 224, by more than half at 512)."""
    rng = np.random.default_rng(0)
    image = synthetic_images.draw_image(synthetic_images.sample_anatomy(rng, "M"), 1024, rng, 2)
    clean = confounders.resize_nearest(image, size).astype(np.float64)
    lowpass = confounders.resize_nearest(confounders.low_pass(image), size).astype(np.float64)
    diff = lowpass - clean
    assert np.abs(diff).mean() > 1.0 and diff.std() > 1.5 and (diff != 0).mean() > 0.5

    def high_frequency_share(x):
        power = np.abs(np.fft.fftshift(np.fft.fft2(x - x.mean()))) ** 2
        yy, xx = np.mgrid[:size, :size] - size // 2
        return power[np.hypot(yy, xx) > size / 4].sum() / power.sum()

    ratio = high_frequency_share(lowpass) / high_frequency_share(clean)
    assert (0.9 < ratio < 1.0) if size == 224 else ratio < 0.5

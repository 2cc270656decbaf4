"""Experiment configs: the paper's grid, `:arg` parsing, overrides, lock and docstrings."""

import pathlib

import pytest

from sourcematters_jax.launch import config_io, plan
from sourcematters_jax.members import MEMBER_FIELDS, P_ART_GRID
from sourcematters_jax.train.config import validate

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"
STUDY = {"tag": "chest14_source_matters", "denoising": "chest14_source_matters",
         "xray_noise": "chest14_source_matters", "sex": "chest14_sex",
         "ct_noise": "lidc_nodules", "ct_xray_noise": "lidc_nodules"}


def load(name, arg="", overrides=()):
    spec = str(CONFIGS / f"{name}.py") + (f":{arg}" if arg else "")
    return config_io.load_config(spec, overrides)


@pytest.mark.parametrize("name", sorted(STUDY))
def test_study_configs_expand_to_the_paper_grid(name):
    config = load(name)
    validate(config)
    assert config.experiment == name and config.dataset == STUDY[name]
    members = plan.sweep_members(config)
    assert len(members) == 6 * 3 * 5  # p_art x source x fold, one seed
    assert {m.experiment for m in members} == {name}
    assert sorted({m.p_art for m in members}) == list(P_ART_GRID)
    assert sorted({m.source for m in members}) == ["imagenet", "radimagenet", "random"]
    assert sorted({m.fold for m in members}) == [1, 2, 3, 4, 5]
    assert {m.seed for m in members} == {812}
    assert len({m.member_id for m in members}) == 90
    assert set(members[0].as_row()) == {"member_id", *MEMBER_FIELDS}
    doc = (CONFIGS / f"{name}.py").read_text()
    assert f"--config=configs/{name}.py" in doc and "Expected" in doc


def test_seeds_multiply_members_and_arg_restricts_the_sweep():
    assert len(plan.sweep_members(load("tag", "seed=1+2+3"))) == 270  # 90 per seed
    config = load("tag", "p_art=0+0.5,source=imagenet,fold=2,weights=/w/")
    assert [m.member_id for m in plan.sweep_members(config)] == ["tag-imagenet-p0-f2-s812",
                                                                 "tag-imagenet-p0.5-f2-s812"]
    assert config.sources.imagenet == "/w/imagenet" and config.sources.radimagenet == "/w/radimagenet"


def test_overrides_apply_and_bad_input_names_the_key():
    config = load("denoising", "", ["--config.batch_size=32", "sweep.fold=(1, 2)", "model.width=8"])
    assert (config.batch_size, config.sweep.fold, config.model.width) == (32, (1, 2), 8)
    with pytest.raises(KeyError, match="'batchsize'.*did you mean batch_size"):
        load("tag", "", ["--config.batchsize=3"])
    with pytest.raises(KeyError, match="'model.widht'"):
        load("tag", "", ["model.widht=3"])
    with pytest.raises(ValueError, match="batch_size=x"):
        load("tag", "", ["batch_size=x"])
    with pytest.raises(ValueError, match="unknown config argument 'pa'"):
        load("tag", "pa=0.5")
    with pytest.raises(ValueError, match="p_art='x'"):
        load("tag", "p_art=x")
    with pytest.raises(ValueError, match="p_art must lie"):
        plan.sweep_members(load("tag", "p_art=2"))
    with pytest.raises(FileNotFoundError, match="nope.py"):
        config_io.load_config("configs/nope.py")
    with pytest.raises(AttributeError):  # locked: a misspelt field is never silently added
        load("tag").learning_rat = 1.0


def test_demo_config_is_tiny_and_confounds_tags():
    config = load("demo")
    validate(config)
    members = plan.sweep_members(config)
    assert (config.experiment, config.dataset) == ("tag", "synthetic_cxr")
    assert sorted({m.p_art for m in members}) == [0.0, 0.5, 1.0]
    assert {m.source for m in members} == {"natural", "radiology", "random"}
    assert config.sources.natural == "" and config.sources.radiology == ""  # the demo pretrains them
    assert len({m.seed for m in members}) >= 2
    assert config.image_size <= 64 and config.model.width <= 16
    assert {m.source for m in plan.sweep_members(load("demo", "source=random"))} == {"random"}


def test_pretrain_config_loads_validates_and_has_the_builtin_options():
    from sourcematters_jax.data.source_builders import SyntheticNatural
    from sourcematters_jax.pretrain.config import validate as validate_pretrain

    config = load("pretrain")
    validate_pretrain(config)
    assert config.model.stage_sizes == (3, 4, 6, 3) and config.image_size == 224
    assert config.data_options.to_dict() == SyntheticNatural.DEFAULTS
    tiny = load("pretrain", "dataset=synthetic_radiology,tiny")
    validate_pretrain(tiny)
    assert tiny.image_size == 64 and tiny.model.width == 8
    assert not load("pretrain", "dataset=mnist").data_options.to_dict()  # TFDS datasets: none
    with pytest.raises(ValueError, match="config.optimizer"):
        validate_pretrain(load("pretrain", "", ["optimizer=lamb"]))


def test_ct_noise_levels_are_the_builders_and_overridable():
    from sourcematters_jax.data import split_options
    from sourcematters_jax.data.lidc import LidcNodules

    for name in ("ct_noise", "ct_xray_noise"):
        options = load(name).data_options.to_dict()
        builder = {k: v for k, v in options.items() if k not in split_options.DEFAULTS}
        assert builder and all(LidcNodules.DEFAULTS[k] == v for k, v in builder.items())
    config = load("ct_noise", "", ["data_options.ct_photons_confounded=5e5"])
    assert config.data_options.ct_photons_confounded == 5e5


def test_fidelity_options_of_the_chest14_configs():
    """Issue 16: the study's p = 0 protocol is xray_noise's default; font, size, draw, extra_ood."""
    from sourcematters_jax.data import split_options

    xray = load("xray_noise")
    assert xray.data_options.p0_protocol == "clean" and xray.image_size == 224
    assert load("xray_noise", "p0=base_noise").data_options.p0_protocol == "base_noise"
    opts, builder = split_options.split_options("xray_noise", "chest14_source_matters",
                                                load("xray_noise").data_options.to_dict())
    assert opts == split_options.SplitOptions((), "clean", "per_member") and builder == {}
    tag = load("tag", "font=study_call,size=512,draw=shared,extra_ood=denoising+xray_noise")
    assert tag.data_options.tag_font == "study_call" and tag.image_size == 512
    opts, builder = split_options.split_options("tag", "chest14_source_matters", tag.data_options.to_dict())
    assert opts.extra_ood == ("denoising", "xray_noise") and opts.confound_draw == "shared"
    assert builder == {"tag_font": "study_call"}
    assert load("tag").data_options.tag_font == "bundled"
    assert "draw" not in load("sex").data_options and "tag_font" not in load("denoising").data_options
    with pytest.raises(ValueError, match="unknown config argument 'p0'"):
        load("tag", "p0=clean")

"""The experiment registry (sourcematters_jax/experiments.py) against the code and data that use it.

Its facts must agree with what the builders actually store and with the paper's results table, and
an unknown name must fail with the valid names listed.
"""

import dataclasses

import pytest

from sourcematters_jax import experiments
from sourcematters_jax.data import experiment as data_experiment, synthetic_builder
from sourcematters_jax.results import figures, naming, paper


def test_names_are_the_paper_results_keys_in_the_study_order():
    keys = list(dict.fromkeys(paper.paper_results()["confounder"]))
    assert experiments.NAMES == tuple(keys)
    assert list(experiments.EXPERIMENTS) == keys


def test_every_dataset_has_a_builder():
    for exp in experiments.EXPERIMENTS.values():
        missing = [d for d in exp.datasets if d not in data_experiment.BUILDERS]
        assert not missing, f"{exp.name}: no builder for {missing}"


@pytest.mark.parametrize("exp", experiments.EXPERIMENTS.values(), ids=lambda e: e.name)
def test_variants_are_what_the_builders_store(exp, tmp_path):
    for dataset in exp.datasets:
        builder = data_experiment.make_builder(exp.name, dataset=dataset, data_dir=tmp_path, image_size=16)
        features = builder.info.features
        if "images" in features:
            stored = set(features["images"].keys())
            assert set(exp.variants) <= stored, (dataset, exp.variants, stored)
            assert len(exp.variants) == 2 and exp.draws_confounders
        else:  # one stored image: the sampled design, nothing drawn
            assert "image" in features and exp.variants == ("clean",), (dataset, exp.variants)
            assert exp.split_design == experiments.HELDOUT_BY_SEX
        if dataset == experiments.SYNTHETIC_DATASET:
            assert builder.builder_config.options["kind"] == exp.synthetic_kind
            assert exp.synthetic_kind in synthetic_builder.KINDS


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown experiment 'tags'") as info:
        experiments.get("tags")
    for name in experiments.NAMES:
        assert repr(name) in str(info.value)
    with pytest.raises(ValueError, match="unknown experiment"):
        experiments.get(None)


def test_queries_and_their_users():
    assert experiments.get("sex").split_design == experiments.HELDOUT_BY_SEX
    assert experiments.where(split_design=experiments.HELDOUT_BY_SEX) == ("sex",)
    assert experiments.get("ct_noise").modality == "ct"
    assert experiments.get("tag").dataset == "chest14_source_matters"
    assert experiments.build_peers("tag") == ("denoising", "xray_noise")
    assert experiments.build_peers("sex") == () and experiments.build_peers("ct_noise") == ()
    assert experiments.where(p0_protocol="clean") == ("xray_noise",)
    assert set(figures.MAIN) | set(figures.NOISE) == set(experiments.NAMES)
    assert not set(figures.MAIN) & set(figures.NOISE)
    assert naming.confounder_title("ct_xray_noise") == "X-ray noise in CT"
    assert naming.confounder_title("mytask") == "mytask"
    with pytest.raises(ValueError, match="unknown Experiment attribute.*'figures'"):
        experiments.where(figures="main")


def test_an_inconsistent_entry_names_its_field():
    tag = experiments.get("tag")
    with pytest.raises(ValueError, match="'tag': field variants"):
        dataclasses.replace(tag, variants=("clean",))
    with pytest.raises(ValueError, match="field split_design"):
        dataclasses.replace(tag, split_design="kfold")
    with pytest.raises(ValueError, match="field synthetic_kind"):
        dataclasses.replace(tag, synthetic_kind=None)

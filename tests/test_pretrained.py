"""sourcematters_jax.pretrained: save/load round trip, strictness, merging into a Classifier."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from sourcematters_jax import pretrained
from sourcematters_jax.models import Classifier, TinyResNet

ARCH = {"family": "keras_resnet_v1", "stage_sizes": [1, 2], "width": 4}


def random_variables(architecture=ARCH, seed=0):
    rng = np.random.default_rng(seed)
    flat = {k: rng.normal(0, 1, s).astype(np.float32)
            for k, s in pretrained.expected_shapes(architecture).items()}
    return traverse_util.unflatten_dict(flat)


def metadata(**over):
    return {"source": "imagenet", "preprocessing": "caffe", "architecture": ARCH,
            "input_file": "x.h5", "input_sha256": "0" * 64, **over}


def test_expected_shapes_are_the_models_own():
    module = TinyResNet(width=4, stage_sizes=(1, 2))
    variables = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    flat = traverse_util.flatten_dict(dict(variables))
    assert pretrained.expected_shapes(ARCH) == {k: v.shape for k, v in flat.items()}
    assert pretrained.architecture_of(module) == ARCH
    assert pretrained.module_for(ARCH) == module


def test_resnet50_variable_count_matches_keras():
    # keras.applications.ResNet50(include_top=False).count_params(): 23,587,712 (incl. the
    # 53,120 BatchNorm moving statistics).
    arch = {"family": "keras_resnet_v1", "stage_sizes": [3, 4, 6, 3], "width": 64}
    shapes = pretrained.expected_shapes(arch)
    assert sum(int(np.prod(s)) for s in shapes.values()) == 23_587_712
    assert sum(int(np.prod(s)) for k, s in shapes.items() if k[0] == "batch_stats") == 53_120


def test_save_load_round_trip(tmp_path):
    variables = random_variables()
    out = pretrained.save(tmp_path / "ckpt", variables, metadata())
    loaded, meta = pretrained.load(out)
    jax.tree.map(np.testing.assert_array_equal, loaded, variables)
    assert meta["source"] == "imagenet" and meta["format_version"] == pretrained.FORMAT_VERSION
    assert all(v.dtype == np.float32 for v in jax.tree.leaves(loaded))
    assert pretrained.is_checkpoint(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary left


def test_save_refuses_bad_variables_and_leaves_nothing(tmp_path):
    variables = random_variables()
    del variables["batch_stats"]["conv1_bn"]
    with pytest.raises(ValueError, match="missing batch_stats/conv1_bn/mean"):
        pretrained.save(tmp_path / "ckpt", variables, metadata())
    with pytest.raises(ValueError, match="preprocessing"):
        pretrained.save(tmp_path / "ckpt", random_variables(), metadata(preprocessing="bgr"))
    assert list(tmp_path.iterdir()) == []


def test_load_is_strict_about_the_stored_tree(tmp_path):
    import orbax.checkpoint as ocp

    variables = random_variables()
    variables["params"]["conv2_block1_1_conv"]["kernel"] = np.zeros((1, 1, 4, 5), np.float32)
    del variables["params"]["conv1_conv"]["bias"]
    variables["params"]["extra"] = {"kernel": np.zeros(3, np.float32)}
    directory = tmp_path / "tampered"
    directory.mkdir()
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(directory / pretrained.VARIABLES_DIR, variables)
        ckptr.wait_until_finished()
    meta = {"format": pretrained.FORMAT, "format_version": 1, **metadata()}
    (directory / pretrained.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="3 problem") as err:
        pretrained.load(directory)
    for line in ("missing params/conv1_conv/bias", "unexpected params/extra/kernel",
                 "mis-shaped params/conv2_block1_1_conv/kernel: shape (1, 1, 4, 5), "
                 "expected (1, 1, 4, 4)"):
        assert line in str(err.value)


def test_metadata_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metadata.json"):
        pretrained.load(tmp_path)
    out = pretrained.save(tmp_path / "ckpt", random_variables(), metadata())
    meta = json.loads((out / "metadata.json").read_text())
    (out / "metadata.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        pretrained.load(out)
    (out / "metadata.json").write_text(json.dumps({**meta, "architecture": {
        "family": "densenet", "stage_sizes": [1], "width": 4}}))
    with pytest.raises(ValueError, match="family 'densenet'"):
        pretrained.load(out)


def test_check_architecture():
    pretrained.check_architecture(metadata(), TinyResNet(width=4, stage_sizes=(1, 2)))
    with pytest.raises(ValueError, match=r"stage_sizes.*\[3, 4, 6, 3\]"):
        pretrained.check_architecture(metadata(), TinyResNet(width=4, stage_sizes=(3, 4, 6, 3)))


def test_merge_into_classifier_backbone(tmp_path):
    """The trainer's path: init a Classifier, drop the converted backbone in, run it."""
    out = pretrained.save(tmp_path / "ckpt", random_variables(seed=3), metadata())
    loaded, meta = pretrained.load(out)
    backbone = pretrained.module_for(meta["architecture"])
    model = Classifier(backbone=backbone)
    x = jnp.asarray(np.random.default_rng(0).normal(0, 50, (2, 32, 32, 3)), jnp.float32)
    abstract = jax.eval_shape(model.init, jax.random.key(0), x)
    target = {c: abstract[c]["backbone"] for c in ("params", "batch_stats")}
    merged = pretrained.merge_into(target, loaded)
    # The head as the trainer would init it; random values here (model.init compiles slowly).
    head = {k: np.random.default_rng(1).normal(0, 0.1, v.shape).astype(np.float32)
            for k, v in abstract["params"]["head"].items()}
    variables = {"params": {"backbone": merged["params"], "head": head},
                 "batch_stats": {"backbone": merged["batch_stats"]}}
    logits = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    features = jax.jit(functools.partial(backbone.apply, train=False))(loaded, x)
    np.testing.assert_allclose(logits, features @ head["kernel"] + head["bias"], rtol=1e-5,
                               atol=1e-4)


def test_merge_into_lists_every_problem_and_casts():
    target = {"params": {"a": {"kernel": jax.ShapeDtypeStruct((2, 3), jnp.bfloat16),
                               "bias": jnp.zeros(3)},
                         "b": {"scale": jnp.zeros(4)}}}
    good = {"params": {"a": {"kernel": np.ones((2, 3)), "bias": np.ones(3)},
                       "b": {"scale": np.ones(4)}}}
    merged = pretrained.merge_into(target, good)
    assert merged["params"]["a"]["kernel"].dtype == jnp.bfloat16
    assert merged["params"]["b"]["scale"].dtype == np.float32
    bad = {"params": {"a": {"kernel": np.ones((3, 2))}, "c": {"scale": np.ones(4)},
                      "b": {"scale": np.ones(4)}}}
    with pytest.raises(ValueError) as err:
        pretrained.merge_into(target, bad, what="backbone of member 3")
    message = str(err.value)
    assert message.startswith("cannot load backbone of member 3: 3 problem(s)")
    for line in ("missing params/a/bias (expected shape (3,))", "unexpected params/c/scale",
                 "mis-shaped params/a/kernel: shape (3, 2), expected (2, 3)"):
        assert line in message

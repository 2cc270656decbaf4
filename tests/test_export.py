"""export: backbone checkpoints and fine-tuned members -> Keras .h5, checked by Keras and convert.

References: Keras 3 itself (jax backend) loads every exported file with plain
`model.load_weights(path)`, its topological legacy-.h5 loader, into keras.applications.ResNet50
(32 px, include_top=False, pooling='avg') and into tiny variants built from Keras' own residual
blocks; and `convert` reads the file back. Tolerances: Keras vs Flax outputs differ by at most
2e-5 times the largest output (float32 in a different op order: measured 5e-6 relative on
ResNet50 features up to 130, i.e. 7e-4 absolute); export -> convert gives the very same arrays,
so its features agree within 1e-5 absolute (exactly, in fact).
"""

import functools

import h5py
import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from flax import traverse_util

from sourcematters_jax.convert_weights import ConversionError, convert, read_keras_weights
from sourcematters_jax.convert_weights.export import export
from sourcematters_jax.convert_weights.export_cli import main
from sourcematters_jax.convert_weights.export_h5 import (flax_to_keras, keras_layer_order, read_export_metadata,
                                       write_keras_h5)
from sourcematters_jax.convert_weights.keras_parity import build_keras_resnet
from sourcematters_jax import pretrained
from sourcematters_jax.members import Member
from sourcematters_jax.train import checkpoints
from sourcematters_jax.train import state as st

KERAS_RTOL = 2e-5
ROUNDTRIP_TOL = 1e-5
TINY = {"family": "keras_resnet_v1", "stage_sizes": [2, 1, 3], "width": 8}
MEMBER_MODEL = {"stage_sizes": [1, 1], "width": 4, "dtype": "float32"}


def random_backbone(architecture, seed):
    """Values for every variable of the architecture's ResNet at sensible scales; BN statistics
    and biases random too, so a swapped gamma/beta or mean/var would show."""
    rng = np.random.default_rng(seed)
    flat = {}
    for key, shape in pretrained.expected_shapes(architecture).items():
        name = key[-1]
        if name == "kernel":
            value = rng.normal(0, 1 / np.sqrt(np.prod(shape[:-1])), shape)
        elif name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # bias, mean
            value = rng.normal(0, 0.2, shape)
        flat[key] = value.astype(np.float32)
    return traverse_util.unflatten_dict(flat)


def inputs(size, seed=0):
    return np.random.default_rng(seed).uniform(-120, 140, (2, size, size, 3)).astype(np.float32)


def close_to_keras(got, want):
    """Max abs difference within KERAS_RTOL of the largest output."""
    return np.max(np.abs(got - want)) <= KERAS_RTOL * np.abs(want).max()


@functools.lru_cache(maxsize=None)
def _jitted_apply(stage_sizes, width):
    module = pretrained.module_for({"family": "keras_resnet_v1", "stage_sizes": list(stage_sizes),
                                    "width": width})
    return jax.jit(functools.partial(module.apply, train=False))


def flax_features(architecture, variables, x):
    apply = _jitted_apply(tuple(architecture["stage_sizes"]), architecture["width"])
    return np.asarray(apply(variables, x))


def keras_features(model, path, x, by_name=False):
    if by_name:
        model.load_weights(str(path), by_name=True)
    else:
        model.load_weights(str(path))  # Keras' default, topological loader
    return np.asarray(model.predict(x, verbose=0))


def leftovers(directory, name):
    return [p.name for p in directory.iterdir() if p.name.startswith(f".{name.split('.')[0]}.")]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    variables = random_backbone(TINY, seed=1)
    pretrained.save(root / "ckpt", variables, {"source": "mine", "preprocessing": "caffe_div255",
                                               "architecture": TINY, "dataset": "folder"})
    return root / "ckpt", variables


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A training workdir as the trainer leaves it: `ProgramCheckpoints` of two members' real
    TrainState/BestState (init_member), the best weights perturbed, member 1 without a best
    epoch."""
    root = tmp_path_factory.mktemp("workdir")
    model = st.build_model(MEMBER_MODEL, 0.5)
    tx = st.make_optimizer(1e-3, 0.9, 0.999, 1e-7)
    init_member = jax.jit(functools.partial(st.init_member, pretrained=None, model=model, tx=tx,
                                            image_size=32))
    mean, scale = st.preprocessing_constants("caffe")
    states = [init_member(st.MemberInit(seed=jnp.int32(seed), source_slot=jnp.int32(-1),
                                        pixel_mean=jnp.asarray(mean),
                                        pixel_scale=jnp.asarray(scale)))
              for seed in (812, 813)]
    train, best = (jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)
                   for trees in zip(*states))
    arch = {"family": "keras_resnet_v1", "stage_sizes": [1, 1], "width": 4}
    for m, seed in enumerate((5, 6)):
        for (collection, *path), value in traverse_util.flatten_dict(
                random_backbone(arch, seed)).items():
            target = getattr(best, collection)["backbone"]
            for key in path[:-1]:
                target = target[key]
            target[path[-1]][m] = value
        best.params["head"]["bias"][m] = np.random.default_rng(seed).normal(0, 1, 2)
    best = best.replace(epoch=np.array([3, 0], np.int32),
                        val_loss=np.array([0.4, np.inf], np.float32))
    members = [Member("tag", "imagenet", 1.0, 1, 812), Member("tag", "random", 0.0, 1, 813)]
    rows = [{"member_index": 10 + i, **m.as_row(), "preprocessing": "caffe"}
            for i, m in enumerate(members)]
    ckpt = checkpoints.ProgramCheckpoints(root / "wd")
    ckpt.save(3, train, best, {"members": rows, "model": MEMBER_MODEL, "image_size": 32})
    ckpt.close()
    return root / "wd", model, rows


# ----------------------------------------------------------------------------- Keras loads it

def test_tiny_backbone_loads_into_keras_and_converts_back(tiny_checkpoint, tmp_path):
    ckpt, variables = tiny_checkpoint
    out = tmp_path / "tiny.h5"
    record = export(ckpt, out)
    assert record["kind"] == "backbone" and record["source"] == "mine"
    assert read_export_metadata(out)["preprocessing"] == "caffe_div255"
    # Keras' own graph: same layer order (the topological loader depends on it), same features.
    model = build_keras_resnet(TINY["stage_sizes"], TINY["width"], 32)
    assert [n for n, _ in keras_layer_order(TINY["stage_sizes"])] == [
        layer.name for layer in model.layers[1:]]
    x = inputs(32)
    want = flax_features(TINY, variables, x)
    assert np.abs(want).max() > 0.5  # a meaningful comparison, not of zeros
    for by_name in (False, True):
        got = keras_features(model, out, x, by_name=by_name)
        assert close_to_keras(got, want)
    # ... and back: convert reads it as a keras-applications file, giving the same arrays.
    meta = convert(out, tmp_path / "back", source="mine", preprocessing_mode="caffe_div255")
    assert meta["input_layout"] == "keras_legacy_weights" and meta["architecture"] == TINY
    loaded, _ = pretrained.load(tmp_path / "back")
    jax.tree.map(np.testing.assert_array_equal, loaded, variables)
    again = flax_features(TINY, loaded, x)
    assert np.max(np.abs(again - want)) <= ROUNDTRIP_TOL


def test_resnet50_loads_into_keras_applications_resnet50(tmp_path):
    arch = {"family": "keras_resnet_v1", "stage_sizes": [3, 4, 6, 3], "width": 64}
    variables = random_backbone(arch, seed=2)
    pretrained.save(tmp_path / "ckpt", variables, {"source": "natural", "preprocessing": "caffe",
                                                   "architecture": arch})
    out = tmp_path / "resnet50_natural_notop.h5"
    export(tmp_path / "ckpt", out)
    with jax.threefry_partitionable(False):  # a cheaper init; load_weights replaces it
        model = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                            input_shape=(32, 32, 3))
    assert [n for n, _ in keras_layer_order(arch["stage_sizes"])] == [
        layer.name for layer in model.layers[1:]]
    x = inputs(32, seed=3)
    got = keras_features(model, out, x)
    want = flax_features(arch, variables, x)
    assert got.shape == (2, 2048) and np.abs(want).max() > 0.5
    assert close_to_keras(got, want)
    # With a head: keras.applications' own include_top=True topology with 2 classes.
    rng = np.random.default_rng(4)
    head = {"kernel": rng.normal(0, 0.02, (2048, 2)).astype(np.float32),
            "bias": np.array([0.3, -0.3], np.float32)}
    with_head = write_keras_h5(tmp_path / "with_head.h5",
                               flax_to_keras(arch["stage_sizes"], variables, head), {})
    with jax.threefry_partitionable(False):
        full = keras.applications.ResNet50(weights=None, include_top=True, classes=2,
                                           input_shape=(32, 32, 3))
    assert [n for n, _ in keras_layer_order(arch["stage_sizes"], include_head=True)] == [
        layer.name for layer in full.layers[1:]]
    probs = keras_features(full, with_head, x)
    want_probs = np.asarray(jax.nn.softmax(want @ head["kernel"] + head["bias"], axis=-1))
    assert np.max(np.abs(probs - want_probs)) <= KERAS_RTOL
    weights = read_keras_weights(out)  # what convert sees: the keras-applications layout
    assert weights.layout == "keras_legacy_weights" and weights.keras_version == "2.2.4"
    with h5py.File(out, "r") as f:
        assert list(f["conv1_conv"].attrs["weight_names"]) == [b"conv1_conv/kernel:0",
                                                               b"conv1_conv/bias:0"]
        assert list(f["conv1_bn"].attrs["weight_names"]) == [
            f"conv1_bn/{v}:0".encode() for v in ("gamma", "beta", "moving_mean",
                                                 "moving_variance")]


def test_member_with_head_matches_the_flax_classifier(workdir, tmp_path):
    wd, model, rows = workdir
    out = tmp_path / "member.h5"
    record = export(wd, out, member=rows[0]["member_id"], include_head=True)
    assert record["member"]["member_id"] == rows[0]["member_id"]
    assert record["best_epoch"] == 3 and record["include_head"] is True
    variables, _ = checkpoints.load_member(wd, rows[0]["member_id"])
    x = inputs(32, seed=4)
    logits = jax.jit(model.apply, static_argnames="train")(variables, x, train=False)
    want = np.asarray(jax.nn.softmax(logits, axis=-1))
    base = build_keras_resnet(MEMBER_MODEL["stage_sizes"], MEMBER_MODEL["width"], 32)
    probs = keras.layers.Dense(2, activation="softmax", name="predictions")(
        keras.layers.Dropout(0.5)(base.output))
    got = keras_features(keras.Model(base.input, probs), out, x)
    assert close_to_keras(got, want)
    assert np.abs(want - 0.5).max() > 0.01  # the head's bias matters
    # convert reads backbones only: the head makes it refuse the file, as any classifier file.
    with pytest.raises(ConversionError, match="_notop"):
        convert(out, tmp_path / "back", source="imagenet")


def test_member_backbone_round_trips_by_index_and_from_an_exported_member(workdir, tmp_path):
    wd, model, rows = workdir
    variables, _ = checkpoints.load_member(wd, rows[0]["member_id"])
    backbone = {c: variables[c]["backbone"] for c in ("params", "batch_stats")}
    assert main(["--input", str(wd), "--output", str(tmp_path / "a.h5"),
                 "--member", str(rows[0]["member_index"])]) == 0
    member_dir = checkpoints.export_member(wd, rows[0]["member_id"], tmp_path / "member")
    export(member_dir, tmp_path / "b.h5")
    for name in ("a", "b"):
        convert(tmp_path / f"{name}.h5", tmp_path / name, source="imagenet")
        loaded, meta = pretrained.load(tmp_path / name)
        assert meta["architecture"]["stage_sizes"] == [1, 1]
        jax.tree.map(np.testing.assert_array_equal, loaded, backbone)


def test_cli_verify_with_keras(tiny_checkpoint, tmp_path, capsys):
    ckpt, _ = tiny_checkpoint
    out = tmp_path / "v.h5"
    assert main(["--input", str(ckpt), "--output", str(out), "--verify",
                 "--verify-image-size", "32"]) == 0
    assert "Keras parity: max abs diff" in capsys.readouterr().out
    check = read_export_metadata(out)
    assert check["architecture"] == TINY and 0 < check["verified_with_keras"]["max_abs_diff"]
    # A difference above the tolerance writes nothing (float32 op order makes it > 1e-12).
    err = refused(tmp_path, capsys, "--input", str(ckpt), "--verify", "--verify-image-size",
                  "32", "--verify-tolerance", "1e-12", out_name="strict.h5")
    assert "not written" in err


# ----------------------------------------------------------------------------- refusals

def refused(tmp_path, capsys, *argv, out_name="out.h5"):
    """Runs the CLI; asserts a refusal that wrote nothing; returns the message."""
    out = tmp_path / out_name
    rc = main([*argv, "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "sourcematters export: error:" in err
    assert not out.exists() and not leftovers(tmp_path, out_name)
    return err


def test_refuses_bad_inputs(tiny_checkpoint, workdir, tmp_path, capsys):
    ckpt, _ = tiny_checkpoint
    wd, _, rows = workdir
    (tmp_path / "plain").mkdir()
    assert "neither a converted backbone checkpoint" in refused(
        tmp_path, capsys, "--input", str(tmp_path / "plain"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metadata.json").write_text('{"format": "something_else"}')
    assert "has format 'something_else'" in refused(tmp_path, capsys, "--input",
                                                    str(tmp_path / "other"))
    assert "no such directory" in refused(tmp_path, capsys, "--input", str(tmp_path / "nope"))
    err = refused(tmp_path, capsys, "--input", str(wd))
    assert "pass --member" in err and rows[1]["member_id"] in err
    err = refused(tmp_path, capsys, "--input", str(wd), "--member", "tag-random-p0.5-f1-s812")
    assert "not in this program" in err
    assert "has no best weights" in refused(tmp_path, capsys, "--input", str(wd), "--member",
                                            rows[1]["member_id"])
    assert "--member applies to training workdirs" in refused(
        tmp_path, capsys, "--input", str(ckpt), "--member", "x")
    assert "has no classifier head" in refused(tmp_path, capsys, "--input", str(ckpt),
                                               "--include-head")


def test_refuses_non_finite_weights(tmp_path, capsys):
    variables = random_backbone(TINY, seed=7)
    variables["params"]["conv2_block1_2_conv"]["kernel"][0, 0, 0, 0] = np.nan
    pretrained.save(tmp_path / "nan", variables, {"source": "mine", "preprocessing": "none",
                                                  "architecture": TINY})
    assert "NaN or inf" in refused(tmp_path, capsys, "--input", str(tmp_path / "nan"))


def test_output_rules(tiny_checkpoint, tmp_path, capsys):
    ckpt, _ = tiny_checkpoint
    assert ".weights.h5" in refused(tmp_path, capsys, "--input", str(ckpt),
                                    out_name="x.weights.h5")
    assert "end the name in .h5" in refused(tmp_path, capsys, "--input", str(ckpt),
                                            out_name="x.keras")
    out = tmp_path / "w.h5"
    assert main(["--input", str(ckpt), "--output", str(out)]) == 0
    before = out.read_bytes()
    assert main(["--input", str(ckpt), "--output", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["--input", str(ckpt), "--output", str(out), "--overwrite"]) == 0
    assert read_keras_weights(out).layout == "keras_legacy_weights"
    precious = tmp_path / "notes.h5"
    precious.write_text("keep me")
    assert main(["--input", str(ckpt), "--output", str(precious), "--overwrite"]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err
    assert precious.read_text() == "keep me"
    (tmp_path / "dir.h5").mkdir()
    assert main(["--input", str(ckpt), "--output", str(tmp_path / "dir.h5")]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.h5", "notes.h5", "w.h5"]

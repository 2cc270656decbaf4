"""convert_weights: Keras .h5 (three layouts) -> Orbax checkpoint, parity with Keras, refusals.

The parity reference is Keras itself: a keras.applications.ResNet50 (weights=None) with
randomised kernels, biases, BN scales/offsets AND moving statistics (so swapped mean/var or
gamma/beta would show), saved by Keras in each layout. Tolerance: max abs feature difference
<= 1e-4 (inference mode, float32, 64x64 input; features are O(10)).
"""

import json
import pickle
import shutil
import subprocess
import sys
import zipfile

import h5py
import jax
import keras
import numpy as np
import pytest
from flax import traverse_util
from keras.src.legacy.saving import legacy_h5_format

from sourcematters_jax.convert_weights import ConversionError, convert
from sourcematters_jax.convert_weights.cli import main
from sourcematters_jax.convert_weights.keras_parity import build_keras_resnet
from sourcematters_jax import pretrained
from sourcematters_jax.models import ResNet50

TOL = 1e-4


# ----------------------------------------------------------------------------- file helpers

def randomise(model, seed):
    """Random conv biases, BN gamma/beta and moving statistics (kernels keep Keras' glorot)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.1, shape),
                               rng.normal(0, 0.5, shape), rng.uniform(0.5, 2.0, shape)])
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])


def save_layouts(model, directory):
    """Keras writes every layout; returns {variant: path}, plus the spelling variants."""
    paths = {"legacy_weights": directory / "weights.h5", "legacy_model": directory / "model.h5",
             "keras3": directory / "model.weights.h5"}
    with h5py.File(paths["legacy_weights"], "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    model.save(paths["legacy_model"])
    model.save_weights(paths["keras3"])
    paths["legacy_model_colon0"] = add_colon0(paths["legacy_model"], directory / "colon.h5")
    paths["keras3_nameless"] = strip_keras3_names(paths["keras3"], directory / "old.weights.h5")
    return paths


def _decode(values):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def add_colon0(src, dst):
    """TF 2 spelling: 'conv1_conv/kernel:0' (Keras 3 writes 'conv1_conv/kernel')."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        root = f["model_weights"] if "model_weights" in f else f
        for layer in _decode(root.attrs["layer_names"]):
            names = _decode(root[layer].attrs["weight_names"])
            assert all(not n.endswith(":0") for n in names)  # what Keras 3 actually writes
            for n in names:
                root[layer].move(n, n + ":0")
            if names:
                root[layer].attrs["weight_names"] = np.array([(n + ":0").encode() for n in names])
    return dst


def strip_keras3_names(src, dst):
    """Older Keras 3 files: no `name` attribute on the vars groups."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        def strip(name, obj):
            if isinstance(obj, h5py.Group) and "name" in obj.attrs:
                del obj.attrs["name"]
        f.visititems(strip)
    return dst


def write_legacy(path, layers, *, model_config=None, root_attrs=None):
    """A legacy Keras h5 by hand: {layer: [(weight name, array), ...]} (empty list: no weights)."""
    with h5py.File(path, "w") as f:
        root = f
        if model_config is not None:
            f.attrs["model_config"] = json.dumps(model_config)
            root = f.create_group("model_weights")
        root.attrs["layer_names"] = np.array([n.encode() for n in layers])
        for k, v in (root_attrs or {}).items():
            root.attrs[k] = v
        for name, weights in layers.items():
            g = root.create_group(name)
            g.attrs["weight_names"] = np.array([w.encode() for w, _ in weights], dtype="S")
            for w, array in weights:
                g.create_dataset(w, data=array)
    return path


def flax_to_keras_layers(variables, colon=""):
    """The inverse rename, for Keras-free tests: {layer: [(weight name, array)]}."""
    layers = {}
    for name, p in sorted(variables["params"].items()):
        if "kernel" in p:
            pairs = [("kernel", p["kernel"]), ("bias", p["bias"])]
        else:
            s = variables["batch_stats"][name]
            pairs = [("gamma", p["scale"]), ("beta", p["bias"]), ("moving_mean", s["mean"]),
                     ("moving_variance", s["var"])]
        layers[name] = [(f"{name}/{k}{colon}", np.asarray(v)) for k, v in pairs]
    return layers


def tiny_variables(seed=0, stage_sizes=(1, 1, 1, 1), width=4):
    """Random values for every variable of a TinyResNet (shapes from the model itself)."""
    rng = np.random.default_rng(seed)
    arch = {"family": "keras_resnet_v1", "stage_sizes": list(stage_sizes), "width": width}
    flat = {k: rng.normal(0, 0.1, shape).astype(np.float32)
            for k, shape in pretrained.expected_shapes(arch).items()}
    return traverse_util.unflatten_dict(flat)


def assert_nothing_written(tmp_path, out):
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.")]


# ----------------------------------------------------------------------------- parity

@pytest.fixture(scope="module")
def resnet50(tmp_path_factory):
    """One randomised Keras ResNet50 at 64x64, saved in every layout, and Keras' features."""
    directory = tmp_path_factory.mktemp("resnet50")
    model = build_keras_resnet((3, 4, 6, 3), 64, 64)  # keras.applications.ResNet50 itself
    assert model.name == "resnet50" and len(model.layers) == 176
    randomise(model, seed=1)
    x = np.random.default_rng(2).uniform(-120, 140, (2, 64, 64, 3)).astype(np.float32)
    return save_layouts(model, directory), x, np.asarray(model.predict(x, verbose=0))


@pytest.mark.parametrize("variant", ["legacy_weights", "legacy_model", "legacy_model_colon0",
                                     "keras3", "keras3_nameless"])
def test_resnet50_features_match_keras(resnet50, variant, tmp_path):
    paths, x, expected = resnet50
    meta = convert(paths[variant], tmp_path / "ckpt", source="radimagenet")
    variables, loaded_meta = pretrained.load(tmp_path / "ckpt")
    assert loaded_meta == {**meta, "format": pretrained.FORMAT,
                           "format_version": pretrained.FORMAT_VERSION}
    assert meta["architecture"] == {"family": "keras_resnet_v1", "stage_sizes": [3, 4, 6, 3],
                                    "width": 64}
    assert meta["preprocessing"] == "caffe_div255"
    assert meta["input_file"] == paths[variant].name
    assert meta["input_layout"] == {"legacy_weights": "keras_legacy_weights",
                                    "keras3": "keras3_weights",
                                    "keras3_nameless": "keras3_weights"}.get(
                                        variant, "keras_legacy_model")
    features = np.asarray(ResNet50().apply(variables, x, train=False))
    assert features.shape == (2, 2048)
    assert np.abs(expected).max() > 1.0  # a meaningful comparison, not of zeros
    assert np.max(np.abs(features - expected)) <= TOL


def test_sha256_and_source_guess(tmp_path):
    import hashlib

    src = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_legacy(src, flax_to_keras_layers(tiny_variables()))
    meta = convert(src, tmp_path / "ckpt")
    assert meta["source"] == "imagenet" and meta["preprocessing"] == "caffe"
    assert meta["input_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    rad = tmp_path / "RadImageNet-ResNet50_notop.h5"
    src.rename(rad)
    meta = convert(rad, tmp_path / "ckpt2")
    assert meta["source"] == "radimagenet" and meta["preprocessing"] == "caffe_div255"


def test_cli_verify_with_keras(resnet50, tmp_path, capsys):
    paths, _, _ = resnet50
    out = tmp_path / "ckpt"
    assert main(["--input", str(paths["keras3"]), "--output", str(out), "--source", "imagenet",
                 "--verify"]) == 0
    check = pretrained.read_metadata(out)["verified_with_keras"]
    assert check["image_size"] == 64 and check["max_abs_diff"] <= TOL
    assert "Keras parity" in capsys.readouterr().out


# ----------------------------------------------------------------------------- tiny variants

def keras3_block_order(stage_sizes):
    """Keras 3's `model.layers` order of a ResNet v1's convolutions (as the ResNet50 file shows:
    the projection shortcut comes after the 3x3 conv)."""
    names = ["conv1"]
    for stage, blocks in enumerate(stage_sizes):
        for block in range(blocks):
            parts = ("1", "2", "0", "3") if block == 0 else ("1", "2", "3")
            names += [f"conv{stage + 2}_block{block + 1}_{p}" for p in parts]
    return names


def write_keras3(path, variables, stage_sizes, with_names):
    """A Keras 3 `.weights.h5` by hand: layers/<class>_<i>/vars/<j>, names optional."""
    params, stats = variables["params"], variables["batch_stats"]
    with h5py.File(path, "w") as f:
        f.create_group("vars")
        f.create_group("layers/input_layer/vars")
        f.create_group("layers/activation/vars").attrs["name"] = "conv1_relu"
        for i, name in enumerate(keras3_block_order(stage_sizes)):
            suffix = f"_{i}" if i else ""
            conv = f.create_group(f"layers/conv2d{suffix}/vars")
            conv["0"], conv["1"] = params[f"{name}_conv"]["kernel"], params[f"{name}_conv"]["bias"]
            bn = f.create_group(f"layers/batch_normalization{suffix}/vars")
            p, s = params[f"{name}_bn"], stats[f"{name}_bn"]
            bn["0"], bn["1"], bn["2"], bn["3"] = p["scale"], p["bias"], s["mean"], s["var"]
            if with_names:
                conv.attrs["name"], bn.attrs["name"] = f"{name}_conv", f"{name}_bn"
    return path


@pytest.mark.parametrize("with_names", [True, False])
def test_tiny_keras3_variant_infers_architecture(tmp_path, with_names):
    stage_sizes, width = (2, 1, 3), 8
    variables = tiny_variables(1, stage_sizes, width)
    path = write_keras3(tmp_path / "tiny.weights.h5", variables, stage_sizes, with_names)
    meta = convert(path, tmp_path / "ckpt", source="mine", preprocessing_mode="none")
    assert meta["architecture"]["stage_sizes"] == [2, 1, 3]
    assert meta["architecture"]["width"] == 8 and meta["num_features"] == 128
    loaded, _ = pretrained.load(tmp_path / "ckpt")
    jax.tree.map(np.testing.assert_array_equal, loaded, variables)


def test_legacy_names_map_exactly_including_nested_submodel(tmp_path):
    variables = tiny_variables()
    flat = write_legacy(tmp_path / "flat.h5", flax_to_keras_layers(variables, ":0"))
    # RadImageNet-style variation: the whole network saved as one sub-model layer.
    nested_weights = [w for ws in flax_to_keras_layers(variables, ":0").values() for w in ws]
    nested = write_legacy(tmp_path / "nested.h5", {"input_1": [], "resnet50": nested_weights},
                          model_config={"class_name": "Functional", "config": {}})
    for i, path in enumerate([flat, nested]):
        convert(path, tmp_path / f"out{i}", source="radimagenet")
        loaded, meta = pretrained.load(tmp_path / f"out{i}")
        assert meta["architecture"]["stage_sizes"] == [1, 1, 1, 1]
        jax.tree.map(np.testing.assert_array_equal, loaded, variables)


# ----------------------------------------------------------------------------- refusals

def refused(tmp_path, capsys, input_path, *extra, out_name="out"):
    """Runs the CLI; asserts a refusal that wrote nothing; returns the message."""
    out = tmp_path / out_name
    rc = main(["--input", str(input_path), "--output", str(out), "--source", "imagenet", *extra])
    err = capsys.readouterr().err
    assert rc != 0 and "error" in err
    assert_nothing_written(tmp_path, out)
    return err


def test_refuses_non_hdf5_and_truncated(tmp_path, capsys):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    assert "not an HDF5 file" in refused(tmp_path, capsys, garbage)
    good = write_legacy(tmp_path / "good.h5", flax_to_keras_layers(tiny_variables()))
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    err = refused(tmp_path, capsys, truncated)
    assert "truncated.h5" in err and "corrupt" in err


def test_refuses_torch_files(tmp_path, capsys):
    zipped = tmp_path / "resnet50.pth"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("resnet50/data.pkl", pickle.dumps({"conv1.weight": 0}))
    assert "PyTorch checkpoint" in refused(tmp_path, capsys, zipped)
    pickled = tmp_path / "old.pth"
    pickled.write_bytes(pickle.dumps({"conv1.weight": 0}, protocol=2))
    assert "pickle" in refused(tmp_path, capsys, pickled)
    in_h5 = tmp_path / "state_dict.h5"
    with h5py.File(in_h5, "w") as f:
        f["conv1.weight"] = np.zeros((64, 3, 7, 7), np.float32)
        f["bn1.running_mean"] = np.zeros(64, np.float32)
    assert "state dict" in refused(tmp_path, capsys, in_h5)


def _fake(names):
    """A legacy weights file whose layers have the given names (one small tensor each)."""
    return {n: [(f"{n}/kernel:0", np.zeros((1, 1, 3, 4), np.float32))] for n in names}


@pytest.mark.parametrize("names, message", [
    (["conv1/conv", "conv1/bn", "conv2_block1_0_bn", "conv2_block1_1_conv", "pool2_conv", "bn"],
     "DenseNet"),
    (["conv1", "bn_conv1", "res2a_branch2a", "bn2a_branch2a", "res2a_branch1"], "v0.2"),
    (["conv1_conv", "conv2_block1_preact_bn", "conv2_block1_1_conv", "post_bn"], "ResNet v2"),
    (["block1_conv1", "block1_conv2", "block2_conv1"], "no layer 'conv1_conv'"),
])
def test_refuses_other_architectures(tmp_path, capsys, names, message):
    path = write_legacy(tmp_path / "other.h5", _fake(names))
    assert message in refused(tmp_path, capsys, path)


def test_refuses_with_top_and_wrong_bn_epsilon(tmp_path, capsys):
    layers = flax_to_keras_layers(tiny_variables())
    with_top = write_legacy(tmp_path / "top.h5", {**layers, "probs": [
        ("probs/kernel:0", np.zeros((128, 1000), np.float32))]})
    assert "_notop" in refused(tmp_path, capsys, with_top)
    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "BatchNormalization", "config": {"name": "conv1_bn", "epsilon": 1e-3}}]}}
    eps = write_legacy(tmp_path / "eps.h5", layers, model_config=config)
    assert "epsilon 0.001" in refused(tmp_path, capsys, eps)


def test_refuses_missing_unexpected_and_misshaped_all_at_once(tmp_path, capsys):
    layers = flax_to_keras_layers(tiny_variables())
    del layers["conv3_block1_2_bn"]
    name, kernel = layers["conv4_block1_1_conv"][0]
    layers["conv4_block1_1_conv"][0] = (name, kernel[:, :, :-1])
    layers["conv2_block1_4_conv"] = layers["conv2_block1_3_conv"]
    err = refused(tmp_path, capsys, write_legacy(tmp_path / "bad.h5", layers))
    assert "7 problem(s)" in err
    for expected in ("missing params/conv3_block1_2_bn/scale",
                     "missing batch_stats/conv3_block1_2_bn/var",
                     "unexpected params/conv2_block1_4_conv/kernel",
                     "mis-shaped params/conv4_block1_1_conv/kernel"):
        assert expected in err


def test_output_directory_rules(tmp_path, capsys):
    path = write_legacy(tmp_path / "w.h5", flax_to_keras_layers(tiny_variables()))
    out = tmp_path / "ckpt"
    assert main(["--input", str(path), "--output", str(out), "--source", "imagenet"]) == 0
    first = pretrained.read_metadata(out)
    rc = main(["--input", str(path), "--output", str(out), "--source", "radimagenet"])
    assert rc != 0 and "--overwrite" in capsys.readouterr().err
    assert pretrained.read_metadata(out) == first  # untouched
    assert main(["--input", str(path), "--output", str(out), "--source", "radimagenet",
                 "--overwrite"]) == 0
    assert pretrained.read_metadata(out)["source"] == "radimagenet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "w.h5"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    rc = main(["--input", str(path), "--output", str(precious), "--source", "imagenet",
               "--overwrite"])
    assert rc != 0 and "not a converted checkpoint" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"


def test_source_and_preprocessing_rules(tmp_path):
    path = write_legacy(tmp_path / "w.h5", flax_to_keras_layers(tiny_variables()))
    with pytest.raises(ConversionError, match="cannot tell the source"):
        convert(path, tmp_path / "a")
    with pytest.raises(ConversionError, match="--preprocessing"):
        convert(path, tmp_path / "a", source="chexpert")
    with pytest.raises(ConversionError, match="needs no conversion"):
        convert(path, tmp_path / "a", source="random")
    with pytest.raises(ConversionError, match="Keras needs >= 32"):
        convert(path, tmp_path / "a", source="imagenet", verify=True, verify_image_size=16)
    meta = convert(path, tmp_path / "a", source="chexpert", preprocessing_mode="none")
    assert meta["preprocessing"] == "none"


def test_python_dash_m_entry_point(tmp_path):
    garbage = tmp_path / "x.h5"
    garbage.write_text("hello")
    proc = subprocess.run([sys.executable, "-m", "sourcematters_jax.convert_weights", "--input", str(garbage),
                           "--output", str(tmp_path / "out"), "--source", "imagenet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "x.h5: not an HDF5 file" in proc.stderr
    assert not (tmp_path / "out").exists()

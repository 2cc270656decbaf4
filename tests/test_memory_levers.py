"""Memory levers: remat (same gradients, less memory), bfloat16 mixed precision, matmul precision.

Tolerances: remat recomputes the same float32 ops, but XLA may fuse the recomputation
differently, so gradients must agree to rtol 1e-5 / atol 1e-6. The ResNet50 saving is measured
on what the forward pass keeps for the backward pass (`train.memory.residual_bytes`, abstract):
remat must keep at most 1/REMAT_FACTOR of it; XLA:CPU's compiled temp size does not show the
saving (see the test's docstring). bfloat16 members trained briefly on the
fake experiment must land within BF16_AUC_TOL of the float32 members' AUCs (mean absolute
difference over members and test sets; measured 0.034 over 12 member x test sets).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from sourcematters_jax.configs import smoke
from fake_experiment import make_experiment
from sourcematters_jax.train import config as config_lib, memory, state as st, step as sp
from sourcematters_jax.train.loop import train_and_evaluate

REMAT_FACTOR = 3.5  # measured 3.63x at batch 8 (1.41 vs 0.39 GB); 4.4x at batch 225
BF16_AUC_TOL = 0.1
TINY = {"stage_sizes": (1, 1), "width": 4, "dtype": "float32"}


def loss_and_grads(model, variables, x, mask):
    def loss(params):
        logits, updates = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                      x, train=True, mask=mask, mutable=["batch_stats"],
                                      rngs={"dropout": jax.random.key(3)})
        return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0]), updates
    return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])


def test_remat_keeps_parameter_names_and_gradients():
    x = np.random.default_rng(0).uniform(-100, 150, (6, 32, 32, 3)).astype(np.float32)
    mask = np.array([1, 1, 1, 1, 0, 1], bool)
    plain, remat = st.build_model(TINY, 0.5), st.build_model(TINY, 0.5, remat=True)
    variables = plain.init(jax.random.key(0), x[:1], train=False)
    # Same names and shapes: conversion (flat Keras names) and checkpoints are unaffected.
    remat_vars = remat.init(jax.random.key(0), x[:1], train=False)
    assert jax.tree.structure(remat_vars) == jax.tree.structure(variables)
    assert "conv2_block1_1_conv" in remat_vars["params"]["backbone"]
    (l0, (u0)), g0 = loss_and_grads(plain, variables, x, mask)
    (l1, (u1)), g1 = loss_and_grads(remat, variables, x, mask)
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves((g1, u1)), jax.tree.leaves((g0, u0))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_remat_shrinks_what_the_resnet50_forward_keeps_for_backward():
    """Saved residuals of ResNet50's training-mode vjp (abstract, no compile), 224 px, batch 8.

    XLA:CPU's memory analysis of the compiled step does NOT show the saving: its schedule keeps
    the recomputed activations alive (measured at 224 px, batch 225, by the planner:
    27.8 GB temp without remat, 31.7 GB with). The residuals are what remat changes on any
    backend; benchmarks/accelerator_check.py reports the compiled temp on the accelerator.
    """
    config = config_lib.base_config()
    without = memory.residual_bytes(config, batch_size=8, remat=False)
    with_remat = memory.residual_bytes(config, batch_size=8, remat=True)
    assert with_remat * REMAT_FACTOR <= without, (without, with_remat)


def test_bfloat16_is_mixed_precision_with_a_float32_stem():
    model = st.build_model({**TINY, "dtype": "bfloat16"}, 0.5)
    x = jnp.ones((2, 32, 32, 3), jnp.float32)
    variables = model.init(jax.random.key(0), x, train=False)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    apply = functools.partial(model.apply, train=True, mutable=["batch_stats"],
                              rngs={"dropout": jax.random.key(1)})
    jaxpr = jax.make_jaxpr(apply)(variables, x)
    convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    conv_dtypes = [e.invars[0].aval.dtype for e in convs]
    assert conv_dtypes[0] == jnp.float32  # conv1_conv: the stem sees the unrounded input
    assert set(conv_dtypes[1:]) == {jnp.dtype(jnp.bfloat16)}
    # 1x1 convs (Conv1x1) are bf16 matmuls; the head is float32 on float32 features.
    assert [e.invars[0].aval.dtype for e in dots[:-1]] == [jnp.bfloat16] * (len(dots) - 1)
    assert dots[-1].invars[0].aval.dtype == jnp.float32
    logits, updates = apply(variables, x)
    assert logits.dtype == jnp.float32
    assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}


def test_matmul_precision_reaches_every_dot():
    f = lambda a, b: a @ b  # noqa: E731
    a = jnp.ones((4, 4))
    text = jax.jit(sp.with_matmul_precision(f, "highest")).lower(a, a).as_text()
    assert "HIGHEST" in text
    assert "HIGHEST" not in jax.jit(sp.with_matmul_precision(f, "default")).lower(a, a).as_text()


def test_new_execution_fields_are_validated():
    config = config_lib.base_config()
    for field, bad in (("remat", "yes"), ("matmul_precision", "tf32"), ("group_size", -1)):
        c = config.copy_and_resolve_references()
        c.execution[field] = bad
        with pytest.raises(ValueError, match=f"config.execution.{field}"):
            config_lib.validate(c)


def run(tmp_path, dtype):
    config = smoke.get_config("epochs=6")
    config.model.dtype = dtype
    exp = make_experiment(num_images=96, size=32)
    return pd.read_csv(train_and_evaluate(config, tmp_path / dtype, data=exp))


def test_bfloat16_members_match_float32_auc(tmp_path):
    f32, bf16 = run(tmp_path, "float32"), run(tmp_path, "bfloat16")
    merged = f32.merge(bf16, on=["member_id", "test_set"], suffixes=("_f32", "_bf16"))
    assert len(merged) == len(f32) == 12
    distance = np.mean(np.abs(merged["auc_f32"] - merged["auc_bf16"]))
    print(f"mean |AUC bf16 - AUC f32| = {distance:.4f} over {len(merged)} member x test sets")
    assert distance <= BF16_AUC_TOL, merged[["member_id", "test_set", "auc_f32", "auc_bf16"]]

"""The throughput benchmark's plumbing: cell planning, the JSON schema and table, its children.

No timing is asserted. The real benchmark (minutes) is not run here: the parent is driven with
fake child results, the matmul child runs on tiny matrices, and the JAX cell is built and traced
(not compiled) so an API change in sourcematters_jax.train breaks this test, not the benchmark.
"""

from __future__ import annotations

import json

import jax
import pytest

from benchmarks import jax_cell, member_throughput
from benchmarks.common import child_env, run_child


def _fake_child(module, spec, env, timeout_s):
    """Plausible child results, shaped like the real children's."""
    common = {"process_wall_s": 1.0, "load_before": [0.5, 0.5, 0.5], "load_after": [0.6, 0.5, 0.5],
              "others_busy_cores": 0.1}
    if module == "matmul_peak":
        return {"size": spec["size"], "numpy_gflops_per_s": 100.0, "jax_gflops_per_s": 80.0,
                "peak_gflops_per_s": 100.0, **common}
    if module == "keras_peer":
        return {"strategy": "keras", "members": 1, "member_images_per_s": 4.0,
                "images_per_s_per_member": 4.0, "compile_s": 5.0, "step_median_s": 4.0,
                "peak_rss_mib": 900.0, **common}
    assert module == "jax_cell"
    assert f"device_count={spec['devices']}" in env["XLA_FLAGS"]
    rate = {"vmap": 2.0, "lax_map": 1.0, "loop": 3.0}[spec["strategy"]] * spec["members"]
    step_s = spec["members"] * spec["batch_size"] / rate
    return {"strategy": spec["strategy"], "devices": spec["devices"], "members": spec["members"],
            "member_images_per_s": rate, "images_per_s_per_member": rate / spec["members"],
            "compile_s": 10.0, "step_median_s": step_s, "flops_member_step": 1e11,
            "useful_flops_per_s": spec["members"] * 1e11 / step_s, "peak_rss_mib": 1000.0,
            **common}


def test_plan_skips_cells_with_fewer_members_than_devices():
    args = member_throughput.parse_args(["--members", "1,2", "--devices", "1,2"])
    cells, skipped = member_throughput.plan_cells(args)
    assert {(c["strategy"], c["devices"], c["members"]) for c in skipped} == {
        ("vmap", 2, 1), ("lax_map", 2, 1), ("loop", 2, 1)}
    assert len(cells) == 3 * 2 + 3 * 1


def test_report_schema_and_table(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(member_throughput, "run_child", _fake_child)
    out = tmp_path / "bench.json"
    member_throughput.main(["--model", "tiny", "--image-size", "32", "--batch-size", "4",
                            "--members", "1,2", "--devices", "1,2", "--wait-timeout", "0",
                            "--cell-wait", "0", "--max-load", "1000", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["schema"] == member_throughput.SCHEMA
    for key in ("command", "host", "config", "load", "matmul_peak", "keras", "cells", "skipped",
                "summary"):
        assert key in report
    assert report["load"]["at_start"] and report["load"]["at_end"]
    loop1 = next(c for c in report["cells"]
                 if (c["strategy"], c["devices"], c["members"]) == ("loop", 1, 2))
    assert loop1["vs_one_by_one"] == 1.0
    assert loop1["vs_keras"] == pytest.approx(6.0 / 4.0)
    assert loop1["utilisation"] == pytest.approx(2e11 / (8 / 6.0) / 1e9 / 100.0, rel=1e-3)
    assert report["keras"]["utilisation"] is not None
    assert report["summary"]["best"]["strategy"] == "loop"
    table = capsys.readouterr().out
    assert "keras (peer)" in table and "util" in table and "skipped" in table
    assert report["load"]["quiet"] is True


def test_matmul_peak_child_runs():
    result = run_child("matmul_peak", {"size": 64, "repeats": 2},
                       child_env("--xla_force_host_platform_device_count=1"), timeout_s=120)
    assert "error" not in result, result
    assert result["numpy_gflops_per_s"] > 0 and result["jax_gflops_per_s"] > 0


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_jax_cell_builds_and_traces_the_product_step(strategy):
    spec = {"model": "tiny", "image_size": 16, "batch_size": 2, "members": 2,
            "strategy": strategy, "devices": min(2, len(jax.local_devices()))}
    cell = jax_cell.build(spec, abstract=True)
    new_state, metrics = jax.eval_shape(cell.step, cell.state, cell.data, cell.pool)
    assert jax.tree.structure(new_state) == jax.tree.structure(cell.state)
    flops = jax_cell.flops_of(jax.jit(cell.member_step).lower(*cell.abstract_args)
                              .cost_analysis())
    assert flops and flops > 0


def test_step_profile_sums_op_time_by_kind():
    from benchmarks import profile_step

    assert profile_step.op_kind("ynn_fusion.12") == "ynn_fusion"
    assert profile_step.op_kind("copy") == "copy"
    events = [("tf_XLAEigen/1", "ynn_fusion.1", 0.3), ("tf_XLAEigen/2", "ynn_fusion.2", 0.5),
              ("tf_XLAEigen/1", "copy.7", 0.2), ("python", "PjitFunction(step)", 9.0),
              ("tf_XLAPjRtCpuClient/3", "ThunkExecutor::Execute (wait for completion)", 5.0),
              ("tf_XLAPjRtCpuClient/3", "end: copy.7", 0.1)]
    totals = profile_step.summarise(events)
    assert totals == pytest.approx({"ynn_fusion": 0.8, "copy": 0.2})
    table = profile_step.markdown(totals, steps=2, step_s=0.25, cores=2, title="t", top=1)
    assert "0.400 | 80.0%" in table  # ynn_fusion: 0.8 s over 2 steps
    assert "(other 1 kinds) | 0.100 | 20.0%" in table
    assert "= 100% of 2 cores" in table  # 1.0 core-s of ops in 2 steps x 0.25 s x 2 cores


def test_accelerator_check_table_and_mfu_from_fake_cells(tmp_path, capsys):
    from benchmarks import accelerator_check as ac

    def fake(module, spec, env, timeout_s):
        assert module == "accel_cells" and env["JAX_PLATFORMS"] == "cuda"
        device = {"platform": "gpu", "device_kind": "NVIDIA H200", "peak_bytes_in_use": 2**30}
        if spec["kind"] == "matmul":
            return {"n": spec["n"], "bf16_tflops": 700.0, "f32_default_tflops": 350.0,
                    "f32_highest_tflops": 50.0, **device}
        if spec["kind"] == "grid":
            return {"members": 90, "epochs": 3, "wall_s": 100.0, "compile_s": 40.0,
                    "fixed_s": 20.0, "per_epoch_s": 10.0, "full_epochs": 30,
                    "projected_full_grid_s": 360.0, "program": {"strategy": "groups"}, **device}
        return {"members": spec["members"], "batch_size": spec["batch_size"],
                "step_median_s": 0.5, "flops_member_step": 2.5e12, "compile_s": 30.0,
                "member_images_per_s": spec["members"] * spec["batch_size"] / 0.5,
                "xla_memory_bytes": {"temp_size_in_bytes": 2**31}, **device}

    report = ac.main(["--platform", "gpu", "--json", str(tmp_path / "r.json"),
                      "--table", str(tmp_path / "r.md")], run=fake)
    assert report["platform"] == "gpu" and json.loads((tmp_path / "r.json").read_text())
    steps = {c["name"]: c for c in report["cells"] if c["kind"] == "step"}
    f32 = steps["1 member, batch 225, float32"]
    assert f32["precision"] == "tf32" and f32["mfu"] == pytest.approx(5.0 / 494.7, rel=1e-3)
    assert steps["1 member, batch 225, bfloat16"]["precision"] == "bf16"
    assert steps["1 member, float32 highest"]["precision"] == "fp32"
    table = (tmp_path / "r.md").read_text()
    assert "projected full grid (30 epochs): 360.0 s" in table and "| vmap: 8 members |" in table
    assert "ran on platform: gpu (NVIDIA H200)" in capsys.readouterr().out


def test_accelerator_check_tiny_runs_on_cpu(tmp_path, capsys):
    """Real children on CPU at the tiny size: matmul peaks, one member's step, the groups cell."""
    from benchmarks.accelerator_check import plan_cells

    names = [c["name"] for c in plan_cells(tiny=True)]
    assert names[4] == "1 member, batch 8, float32" and names[6].startswith("groups")
    from benchmarks import accelerator_check as ac

    report = ac.main(["--tiny", "--platform", "cpu", "--cells", "0,4,6",
                      "--table", str(tmp_path / "t.md")])
    out = capsys.readouterr().out
    assert "ran on platform: cpu" in out and "| 1 member, batch 8, float32 |" in out
    ran = [c for c in report["cells"] if "error" not in c and c.get("kind") == "step"]
    assert {c["strategy"] for c in ran} == {"loop", "groups"}, report["cells"]
    groups = next(c for c in ran if c["strategy"] == "groups")
    assert groups["members"] == 4 and groups["all_members_finite"]
    assert all(c["mfu"] > 0 for c in ran)  # against the measured CPU matmul peak

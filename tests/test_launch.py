"""Launch planning: packing under a budget, memory estimate, manifest checks, TPU commands."""

import json
import pathlib
import shlex

import pytest

from sourcematters_jax.launch import config_io, memory, plan, sweep, tpu
from sourcematters_jax.train import memory as step_memory
from sourcematters_jax.members import Member

TAG = str(pathlib.Path(__file__).resolve().parent.parent / "configs" / "tag.py")


def members(experiments=("tag",), n=90):
    sweep_ = dict(experiment=experiments, source=["imagenet", "radimagenet", "random"],
                  p_art=[0, .1, .2, .5, .8, 1], fold=[1, 2, 3, 4, 5], seed=[812])
    return plan.expand_sweep(sweep_)[:n * len(experiments)]


@pytest.mark.parametrize("capacity", [1, 7, 32, 45, 89, 90, 1000])
def test_pack_respects_capacity_balances_and_covers_in_order(capacity):
    ms = members()
    programs = plan.pack(ms, capacity)
    sizes = [p.size for p in programs]
    assert max(sizes) <= capacity and max(sizes) - min(sizes) <= 1
    assert len(programs) == -(-90 // capacity)  # as few programs as the budget allows
    assert [i for p in programs for i in range(p.start, p.stop)] == list(range(90))
    assert [p.index for p in programs] == list(range(len(programs)))


def test_pack_never_mixes_experiments():
    ms = members(("tag", "denoising"))
    programs = plan.pack(ms, 40)
    for p in programs:
        assert {m.experiment for m in ms[p.start:p.stop]} == {p.experiment}
    assert [p.size for p in programs] == [30, 30, 30, 30, 30, 30]
    with pytest.raises(ValueError, match="capacity"):
        plan.pack(ms, 0)


def test_memory_estimate_lowers_the_real_member_step(monkeypatch, tmp_path):
    monkeypatch.setenv("SOURCEMATTERS_CACHE_DIR", str(tmp_path))
    config = config_io.load_config(TAG, ["model.stage_sizes=(1,)", "model.width=4", "image_size=16",
                                         "batch_size=16"])
    est = step_memory.measure_member_step(config, batch_size=16, remat=False)
    # conv1 7x7x3x4+4, bn 2x4; block 1x1 4->16, 1x1 4->4, 3x3 4->4, 1x1 4->16 (+biases), bns
    # 2x(16+4+4+16); head 16x2+2.
    assert est.num_params == (588 + 4) + 8 + (64 + 16) + (16 + 4) + (144 + 4) + (64 + 16) + 80 + 34
    assert est.num_stats == 2 * (4 + 16 + 4 + 4 + 16)
    # TrainState (params, Adam mu and nu, BN stats) + BestState (params, stats) + small scalars.
    tensors = 4 * (4 * est.num_params + 2 * est.num_stats)
    assert tensors <= est.state_bytes < tensors + 1024
    assert est.step_bytes > 0 and est.measured_on == "cpu"
    # Kept on disk: the planner does not compile the same step twice.
    assert (tmp_path / "step_memory.json").is_file()
    assert step_memory.measure_member_step(config, batch_size=16, remat=False) == est


def fake_step(state_mib, step_gib_by_remat):
    """A measure_member_step stand-in with ResNet50-like numbers (no ResNet50 compile)."""
    def measure(config, *, batch_size, remat):
        return step_memory.StepMemory(
            num_params=23_500_000, num_stats=53_000, state_bytes=int(state_mib * 2**20),
            step_bytes=int(step_gib_by_remat[remat] * memory.GIB), batch_size=batch_size,
            remat=remat, dtype="float32", measured_on="cpu")
    return measure


def test_effective_batch_is_the_largest_training_set():
    assert memory.effective_batch(config_io.load_config(TAG))[0] == 225  # fold 3: 225 images
    assert memory.effective_batch(config_io.load_config(TAG + ":fold=2"))[0] == 217
    smoke = config_io.load_config(str(pathlib.Path(TAG).with_name("smoke.py")))
    assert memory.effective_batch(smoke)[0] == smoke.batch_size  # not known: the upper bound


def test_gpu_budget_is_the_allocator_fraction(monkeypatch):
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    budget, why = memory.device_budget(80, "gpu")
    assert budget == 60 * memory.GIB and "0.75" in why
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", ".9")
    assert memory.device_budget(80, "gpu")[0] == 72 * memory.GIB
    assert memory.device_budget(16, "tpu")[0] == 16 * memory.GIB
    with pytest.raises(ValueError, match="--device_memory_gib is needed"):
        memory.device_budget(0, "gpu")


@pytest.mark.parametrize("gib,programs", [(80, 1), (40, 2)])
def test_tag_grid_plan_on_one_gpu(monkeypatch, gib, programs):
    # 359 MiB of state per member (float32 ResNet50); one member's step at batch 225: 26 GiB
    # without remat, 8 GiB with (of the order XLA:CPU measures, docs/launch.md).
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    monkeypatch.setattr(step_memory, "measure_member_step", fake_step(359, {False: 26, True: 8}))
    config = config_io.load_config(TAG)
    est = memory.plan_capacity(config, platform="gpu", devices=1, num_members=90,
                               device_memory_gib=gib)
    assert est.strategy == "groups" and -(-90 // est.capacity) == programs
    assert est.memory.batch_size == 225
    assert est.remat  # without it, 26 GiB of step leave room for too few members
    text = "\n".join(est.lines)
    assert "0.75 x --device_memory_gib" in text and "largest program per device" in text
    assert est.execution() == {"group_size": est.group_size, "remat": "on" if est.remat else "off"}
    # Every program of the plan runs what was planned.
    p = plan.make_plan("/tmp/unused-root", config, est.capacity,
                       notes={"execution": est.execution()})
    assert len(p.programs) == programs
    pinned = p.program_config(p.programs[0]).execution
    assert (pinned.group_size, pinned.remat) == (est.group_size, est.execution()["remat"])


def test_cpu_plan_counts_one_member_step_for_loop(monkeypatch):
    monkeypatch.setattr(step_memory, "measure_member_step", fake_step(359, {False: 26, True: 8}))
    est = memory.plan_capacity(config_io.load_config(TAG), platform="cpu", devices=2,
                               num_members=90, device_memory_gib=64)
    assert est.strategy == "loop" and not est.remat and est.execution() == {}
    assert est.capacity == 2 * int((64 * 0.9 - 26) * 1024 // 359)
    # 18 GiB usable: without remat not one member fits; remat 'auto' turns it on.
    small = memory.plan_capacity(config_io.load_config(TAG), platform="cpu", devices=1,
                                 num_members=90, device_memory_gib=20)
    assert small.remat and small.capacity == int((20 * 0.9 - 8) * 1024 // 359)
    with pytest.raises(ValueError, match="lower batch_size"):
        memory.plan_capacity(config_io.load_config(TAG), platform="cpu", devices=1,
                             num_members=90, device_memory_gib=5)


def test_manifest_reused_and_a_different_sweep_is_refused(tmp_path):
    config = config_io.load_config(TAG)
    first = plan.make_plan(tmp_path, config, 32, config_spec=TAG)
    plan.write_manifest(first)
    manifest = json.loads((tmp_path / plan.MANIFEST).read_text())
    assert len(manifest["members"]) == 90 and manifest["programs"][0]["member_indices"] == "0:30"
    # Relaunching with another budget keeps the recorded packing (members never move).
    again = plan.make_plan(tmp_path, config, 5, config_spec=TAG)
    assert again.programs == first.programs
    assert plan.load_plan(tmp_path).programs == first.programs  # rebuilt from the spec
    # Runtime-only fields may change on resume; anything else is another sweep.
    config_io.load_config(TAG, ["progress_every_secs=1"])
    plan.make_plan(tmp_path, config_io.load_config(TAG, ["progress_every_secs=1"]), 32)
    with pytest.raises(ValueError, match="config keys differ: batch_size, sweep.seed"):
        plan.make_plan(tmp_path, config_io.load_config(TAG + ":seed=1", ["batch_size=8"]), 32)
    with pytest.raises(ValueError, match="member_indices"):
        plan.make_plan(tmp_path / "x", config_io.load_config(TAG, ["member_indices=0:3"]), 32)


def test_finished_means_results_for_every_member(tmp_path):
    ms = [Member("tag", "random", 0.0, 1, s) for s in (1, 2)]
    path = tmp_path / "results.csv"
    assert not plan.results_cover(path, ms)
    path.write_text("member_id,test_set,auc\n" + "".join(
        f"{ms[0].member_id},{t},0.5\n" for t in ("iid", "ood", "clean")))
    assert plan.results_cover(path, ms[:1]) and not plan.results_cover(path, ms)


def test_tpu_command_runs_each_vms_programs_on_all_workers(tmp_path):
    config = config_io.load_config(TAG)
    p = plan.make_plan(tmp_path, config, 32, config_spec="configs/tag.py")
    commands = tpu.tpu_commands(p, p.programs, tpus=["vm-a", "vm-b"], zone="us-central2-b",
                                project="proj", repo_dir="~/sm")
    assert len(commands) == 2
    assert commands[0][:9] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "vm-a",
                               "--zone=us-central2-b", "--project=proj", "--worker=all"]
    remote = commands[0][9]
    assert remote.startswith("--command=cd ~/sm && ")
    args = shlex.split(remote.split(" && ", 1)[1])
    assert args[:3] == ["python3", "-m", "sourcematters_jax.launch.program"]
    assert f"--root={tmp_path}" in args and "--distributed" in args
    assert [a for a in args if a.startswith("--program=")] == ["--program=0", "--program=2"]
    assert "--program=1" in commands[1][9]
    with pytest.raises(ValueError, match="zone"):
        tpu.tpu_commands(p, p.programs, tpus=["vm-a"], zone="")


def test_sweep_dry_run_plans_without_writing(tmp_path, capsys):
    root = tmp_path / "sweep"
    assert sweep.main([f"--config={TAG}:seed=1+2", f"--root={root}", "--members_per_program=60",
                       "--dry_run", "--config.batch_size=64"]) == 0
    out = capsys.readouterr().out
    assert "180 members in 3 programs" in out and "program_002  members   120:180" in out
    assert not root.exists()
    assert sweep.main([f"--config={TAG}", f"--root={root}", "--dry_run", "--config.batchsize=64"]) == 2
    assert "error: unknown config key 'batchsize'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # flag errors name the flag (argparse exits with status 2)
        sweep.main([f"--config={TAG}", f"--root={root}", "--dry_run", "--processes=0"])
    assert "--processes must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main([f"--config={TAG}", f"--root={root}", "--executor=tpu", "--tpu_name=vm"])
    assert "--tpu_zone" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main([f"--config={TAG}", f"--root={root}", "--dry_run", "--config.batch_size", "64"])
    assert "--config.KEY=VALUE" in capsys.readouterr().err

"""Launch planning: packing under a budget, memory estimate, manifest checks, TPU commands."""

import json
import pathlib
import shlex

import pytest

from launch import config_io, memory, plan, sweep, tpu
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


def test_memory_estimate_counts_params_and_measures_activations():
    config = config_io.load_config(TAG, ["model.stage_sizes=(1,)", "model.width=4", "image_size=16",
                                         "batch_size=16"])
    est = memory.estimate_member_memory(config)
    # conv1 7x7x3x4+4, bn 2x4; block 1x1 4->16, 1x1 4->4, 3x3 4->4, 1x1 4->16 (+biases), bns
    # 2x(16+4+4+16); head 16x2+2.
    assert est.num_params == (588 + 4) + 8 + (64 + 16) + (16 + 4) + (144 + 4) + (64 + 16) + 80 + 34
    assert est.num_stats == 2 * (4 + 16 + 4 + 4 + 16)
    assert est.state_bytes == 4 * (5 * est.num_params + 2 * est.num_stats)
    assert est.activation_bytes_per_image > 0
    per_member = est.state_bytes + est.activation_bytes
    budget = 10.5 * per_member / memory.GIB / 0.9  # room for 10.5 members after the 10% reserve
    assert memory.members_per_program(est, device_memory_gib=budget, devices=1, strategy="vmap") == 10
    assert memory.members_per_program(est, device_memory_gib=budget, devices=4, strategy="vmap") == 40
    # Members taking turns ('loop') share one set of activations, so more of them fit.
    assert memory.members_per_program(est, device_memory_gib=budget, devices=1, strategy="loop") > 10
    with pytest.raises(ValueError, match="lower batch_size or image_size"):
        memory.members_per_program(est, device_memory_gib=per_member / memory.GIB / 2, devices=1,
                                   strategy="vmap")


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
    assert args[:3] == ["python3", "-m", "launch.program"]
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

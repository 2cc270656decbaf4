"""The demo: its console table, and the whole pipeline (source pretraining, sweep, training,
report) on a tiny config."""

import logging
import pathlib

import pandas as pd
import pytest

from sourcematters_jax import demo


@pytest.fixture(autouse=True)
def restore_logging_levels():
    """demo --quiet lowers absl's verbosity and the root level for its process: give the rest of
    this test worker (tests that read INFO logs) its levels back."""
    absl_logger, root = logging.getLogger("absl"), logging.getLogger()
    levels = absl_logger.level, root.level
    yield
    absl_logger.setLevel(levels[0])  # NOTSET again, not set_verbosity's explicit level
    root.setLevel(levels[1])

# configs/demo.py shrunk to seconds: two seeds, p_art 0 and 1, one ResNet stage, 32 px images from
# synthetic X-rays generated at 64 px, one epoch; the sources pretrained for one epoch of 8 images
# per class (PRETRAIN_TINY).
TINY_DEMO = """
from sourcematters_jax.configs import demo

def get_config(arg=None):
    config = demo.get_config(arg)
    config.image_size = 32
    config.model.stage_sizes = (1,)
    config.num_epochs = 1
    config.patience = 1
    with config.data_options.unlocked():
        config.data_options.full_size = 64
    return config
"""


PRETRAIN_TINY = ["--pretrain_override=data_options.train_per_class=8",
                 "--pretrain_override=data_options.test_per_class=2",
                 "--pretrain_override=batch_size=16", "--pretrain_override=num_epochs=1"]


def test_auc_table_and_verdict(tmp_path):
    path = tmp_path / "results.csv"
    rows = ["member_id,source,p_art,test_set,auc,status"]
    for p, iid, ood in [(0.0, 0.8, 0.78), (0.0, 0.9, 0.82), (1.0, 1.0, 0.05), (1.0, 1.0, 0.15)]:
        rows += [f"m,natural,{p},iid,{iid},ok", f"m,natural,{p},ood,{ood},ok",
                 f"m,natural,{p},clean,0.5,ok"]
    rows += ["m,random,0.0,iid,0.7,ok", "m,random,0.0,ood,0.6,ok", "m,random,1.0,ood,0.55,ok"]
    rows.append("m,natural,1.0,ood,0.99,nonfinite_loss")  # failed members are left out
    path.write_text("\n".join(rows) + "\n")
    table = demo.auc_table(path)
    assert table["natural"][0.0]["iid"] == [0.8, 0.9] and table["natural"][1.0]["ood"] == [0.05, 0.15]
    assert table["random"][1.0]["ood"] == [0.55]
    text = demo.format_auc_table(table)
    assert "  natural  0       0.850 ± 0.071   0.800 ± 0.028" in text
    assert "  random   1             -         0.550 ± 0.000" in text
    assert "natural: o.o.d. AUC falls by 0.70 from p_art=0 to p_art=1" in text
    assert "random: o.o.d. AUC changes by -0.05 from p_art=0 to p_art=1: no clear shortcut" in text


def test_demo_gives_the_process_its_logging_levels_back(tmp_path, capsys):
    """--quiet lowers absl's and the root logger's levels while the demo runs, not after it."""
    from absl import logging as absl_logging

    absl_logger, root = logging.getLogger("absl"), logging.getLogger()
    root.setLevel(logging.INFO)
    before = absl_logger.level, root.level, absl_logging.get_verbosity(), list(absl_logger.filters)
    assert demo.main([f"--root={tmp_path}", "--quiet", f"--config={tmp_path / 'missing.py'}"]) == 2
    assert "sourcematters demo: error:" in capsys.readouterr().err  # it ran _setup, then stopped
    assert (absl_logger.level, root.level, absl_logging.get_verbosity(),
            list(absl_logger.filters)) == before


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    config_file = tmp_path / "tiny_demo.py"
    config_file.write_text(TINY_DEMO)
    root = tmp_path / "demo"
    argv = [f"--root={root}", f"--config={config_file}:p_art=0+1,seed=1+2", "--quiet",
            f"--config.data_dir={tmp_path / 'tfds'}", *PRETRAIN_TINY]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    for source in ("natural", "radiology"):
        assert f"source {source}: pretraining on synthetic_{source}" in out
        assert (root / "sources" / source / "backbone" / "metadata.json").is_file()
    assert "12 members" in out and "in 1 program(s)" in out
    # --quiet: the summary only, none of the launcher's or TFDS's progress lines.
    assert "[launch]" not in out and "Downloading and preparing" not in out and "wrote " not in out
    start = out.index("p_art   i.i.d. AUC")
    table = out[start:out.index("\n\n", start)]
    rows = [line.split()[:2] for line in table.splitlines()[1:7]]
    assert rows == [[s, p] for s in ("natural", "radiology", "random") for p in ("0", "1")]
    results = pd.read_csv(root / "results.csv")
    assert set(results["source"]) == {"natural", "radiology", "random"}
    tests = pd.read_csv(root / "report" / "tests.csv")
    assert set(zip(tests["source_a"], tests["source_b"])) == {("natural", "radiology")}
    assert tests["p_value"].notna().any() and "natural" in (root / "report" / "report.md").read_text()
    shown = {line.split()[0]: pathlib.Path(line.split()[-1]) for line in out.splitlines()
             if line.strip().startswith(("results table", "report", "figure"))}
    assert shown["results"] == root / "results.csv" and shown["report"] == root / "report" / "report.md"
    assert all(path.is_file() for path in shown.values()) and shown["figure"].suffix == ".png"
    assert list(root.glob("program_000/**/events.out.tfevents.*")), "no TensorBoard events"
    assert f"tensorboard --logdir {root}" in out

    assert demo.main(argv) == 0  # a second run finds the program finished and only reports
    out = capsys.readouterr().out
    assert "all 1 program(s) already finished" in out and table in out
    assert "source natural: pretrained before" in out and "source radiology: pretrained before" in out

"""The demo: its console table, and the whole pipeline (sweep, training, report) on a tiny config."""

import pathlib

from sourcematters_jax import demo

# configs/demo.py shrunk to seconds: one seed, p_art 0 and 1, one ResNet stage, 32 px images from
# synthetic X-rays generated at 64 px, one epoch.
TINY_DEMO = """
from configs import demo

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


def test_auc_table_and_verdict(tmp_path):
    path = tmp_path / "results.csv"
    rows = ["member_id,p_art,test_set,auc,status"]
    for p, iid, ood in [(0.0, 0.8, 0.78), (0.0, 0.9, 0.82), (1.0, 1.0, 0.05), (1.0, 1.0, 0.15)]:
        rows += [f"m,{p},iid,{iid},ok", f"m,{p},ood,{ood},ok", f"m,{p},clean,0.5,ok"]
    rows.append("m,1.0,ood,0.99,nonfinite_loss")  # failed members are left out
    path.write_text("\n".join(rows) + "\n")
    table = demo.auc_table(path)
    assert table[0.0]["iid"] == [0.8, 0.9] and table[1.0]["ood"] == [0.05, 0.15]
    text = demo.format_auc_table(table)
    assert "0.850 ± 0.071   0.800 ± 0.028" in text
    assert "o.o.d. AUC falls by 0.70 from p_art=0 to p_art=1" in text
    flat = {0.0: {"iid": [0.8], "ood": [0.8]}, 1.0: {"iid": [0.9], "ood": [0.75]}}
    assert "no clear shortcut" in demo.format_auc_table(flat)


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    config_file = tmp_path / "tiny_demo.py"
    config_file.write_text(TINY_DEMO)
    root = tmp_path / "demo"
    argv = [f"--root={root}", f"--config={config_file}:p_art=0+1,seed=1", "--quiet",
            f"--config.data_dir={tmp_path / 'tfds'}"]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "2 members" in out and "in 1 program(s)" in out
    # --quiet: the summary only, none of the launcher's or TFDS's progress lines.
    assert "[launch]" not in out and "Downloading and preparing" not in out and "wrote " not in out
    start = out.index("p_art   i.i.d. AUC")
    table = out[start:out.index("\n\n", start)]
    assert table.splitlines()[1].split()[0] == "0" and table.splitlines()[2].split()[0] == "1"
    shown = {line.split()[0]: pathlib.Path(line.split()[-1]) for line in out.splitlines()
             if line.strip().startswith(("results table", "report", "figure"))}
    assert shown["results"] == root / "results.csv" and shown["report"] == root / "report" / "report.md"
    assert all(path.is_file() for path in shown.values()) and shown["figure"].suffix == ".png"
    assert list(root.glob("program_000/**/events.out.tfevents.*")), "no TensorBoard events"
    assert f"tensorboard --logdir {root}" in out

    assert demo.main(argv) == 0  # a second run finds the program finished and only reports
    out = capsys.readouterr().out
    assert "all 1 program(s) already finished" in out and table in out

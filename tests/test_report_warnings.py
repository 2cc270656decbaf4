"""The report's warnings: 'ok' rows with NaN AUCs are listed (never shown as "not run"), and the
paper comparison says when the data are synthetic and leaves out the cells that were not run."""

import numpy as np
from matplotlib import pyplot as plt

from sourcematters_jax.results import report
from test_report_synthetic import make_results


def _close(rep):
    for fig in rep.figures.values():
        plt.close(fig)


def test_ok_rows_with_nan_auc_are_warned_about_and_listed(tmp_path, capsys):
    df = make_results(sources=("imagenet", "random"), p_arts=(0.0, 1.0), folds=(1, 2))
    # Both folds of one cell ran 'ok' but have no AUC (e.g. a one-class test set); one more row
    # of another cell has a NaN Keras AUC only.
    cell = (df.source == "imagenet") & (df.p_art == 1.0) & (df.test_set == "ood")
    df.loc[cell, ["auc", "auc_keras"]] = np.nan
    other = df.index[(df.source == "random") & (df.p_art == 0.0) & (df.test_set == "iid")][0]
    df.loc[other, "auc_keras"] = np.nan
    (tmp_path / "w").mkdir()
    df.to_csv(tmp_path / "w" / "results.csv", index=False)

    rep = report.build_report([tmp_path / "w"], n_boot=50)
    _close(rep)
    assert rep.nonfinite_rows == 3
    row = rep.summary[(rep.summary.source == "imagenet") & (rep.summary.p_art == 1.0)
                      & (rep.summary.test_set == "ood")].iloc[0]
    assert row.auc_n == 0 and row.auc_n_nonfinite == 2 and row.n_failed == 0
    assert "– (2 NaN)" in rep.summary_md  # not a bare '–', which means "not run"
    assert "(n=1), 1 NaN" in rep.summary_md  # the other cell keeps its one finite fold
    assert "**Warning:** 3 row(s) with status 'ok' have a NaN AUC" in rep.page
    listed = rep.page.split("**Warning:**", 1)[1].split("## Figures", 1)[0]
    assert listed.count("tag-imagenet-p1") == 2 and "| NaN |" in listed

    assert report.main(["--workdir", str(tmp_path / "w"), "--n-boot", "50"]) == 0
    err = capsys.readouterr().err
    assert "warning: 3 row(s) with status 'ok' have a NaN AUC" in err


def test_clean_table_has_no_nan_warning(tmp_path):
    df = make_results(sources=("imagenet",), p_arts=(0.0,), folds=(1, 2))
    (tmp_path / "w").mkdir()
    df.to_csv(tmp_path / "w" / "results.csv", index=False)
    rep = report.build_report([tmp_path / "w"], n_boot=50)
    _close(rep)
    assert rep.nonfinite_rows == 0 and "**Warning:**" not in rep.page and " NaN" not in rep.summary_md


def test_paper_comparison_says_synthetic_and_skips_cells_not_run(tmp_path):
    df = make_results(sources=("random",), p_arts=(0.0, 1.0), folds=(1,), seeds=(812, 813))
    (tmp_path / "demo").mkdir()
    df.to_csv(tmp_path / "demo" / "results.csv", index=False)
    rep = report.build_report([tmp_path / "demo"], n_boot=50)
    _close(rep)
    section = rep.page.split("## Comparison with the study", 1)[1].split("## Summary", 1)[0]
    assert "on synthetic data (synthetic_cxr)" in section
    table_rows = [line for line in section.splitlines() if line.startswith("| tag ")]
    # 2 p_art x 3 test sets were run; the paper's other tag cells stay in the CSV only.
    assert len(table_rows) == 6 and all("| random |" in line for line in table_rows)
    assert (rep.comparison.user_n == 0).sum() > 0  # the CSV keeps every paper cell
    assert f"{(rep.comparison.user_n == 0).sum()} paper cell(s)" in section

    real = df.assign(dataset="chest14_source_matters")
    (tmp_path / "real").mkdir()
    real.to_csv(tmp_path / "real" / "results.csv", index=False)
    rep = report.build_report([tmp_path / "real"], n_boot=50)
    _close(rep)
    assert "synthetic data" not in rep.page

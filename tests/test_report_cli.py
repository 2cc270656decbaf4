"""The whole report on synthetic sweeps with known values: numbers vs numpy/scipy, files, figures, CLI."""

import math
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from test_report_synthetic import AUC_SHIFT, FOLD_OFFSETS, cell_mean, make_results, write_results

from sourcematters_jax.results import figures, report
from sourcematters_jax.results.load import load_results
from sourcematters_jax.results.stats import cell_rng
from sourcematters_jax.results.summary import summarize

N_BOOT = 2000
FAILED = ("tag", "imagenet", 0.5, 2, 812)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep root with one program per confounder group, a user source and a failed member."""
    root = tmp_path_factory.mktemp("sweep")
    write_results(root / "tag", confounders=("tag",), sources=("imagenet", "radimagenet", "random", "mine"),
                  failed=[FAILED])
    write_results(root / "noise", confounders=("xray_noise",), test_sets=("ood",))
    assert report.main(["--workdir", str(root), "--n-boot", str(N_BOOT)]) == 0
    return root


def independent_fold_values(path_glob_root, confounder, test_set, source, p_art, metric="auc_keras"):
    """Fold values read straight from the CSVs with plain pandas/numpy (no report code)."""
    df = pd.concat([pd.read_csv(p) for p in sorted(path_glob_root.rglob("results.csv"))])
    df = df[(df.experiment == confounder) & (df.test_set == test_set) & (df.source == source)
            & np.isclose(df.p_art, p_art) & (df.status == "ok")]
    return df.groupby("fold")[metric].mean().to_numpy()


def test_report_files_exist(sweep):
    out = sweep / "report"
    names = {p.name for p in out.iterdir()}
    expected = {"summary.csv", "summary.md", "tests.csv", "paper_comparison.csv", "report.md"}
    for stem in ("figure_main_auc", "figure_main_auc_keras", "figure_noise_auc", "figure_noise_auc_keras",
                 "figure_paper_comparison"):
        expected |= {f"{stem}.png", f"{stem}.pdf"}
    assert names == expected
    assert (out / "figure_main_auc_keras.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "figure_main_auc_keras.pdf").read_bytes()[:4] == b"%PDF"
    page = (out / "report.md").read_text()
    assert "tag-imagenet-p0.5-f2-s812" in page and "nonfinite_loss" in page


def test_summary_equals_independent_numpy_and_scipy(sweep):
    summary = pd.read_csv(sweep / "report" / "summary.csv")
    assert len(summary) == (6 * 4 * 3) + (6 * 3)  # tag: 4 sources x 6 p_art x 3 test sets; noise: ood
    for conf, test_set, src, p in [("tag", "ood", "imagenet", 0.5), ("tag", "iid", "mine", 0.2),
                                   ("xray_noise", "ood", "radimagenet", 1.0)]:
        row = summary[(summary.confounder == conf) & (summary.test_set == test_set)
                      & (summary.source == src) & np.isclose(summary.p_art, p)].iloc[0]
        for metric in ("auc", "auc_keras"):
            v = independent_fold_values(sweep, conf, test_set, src, p, metric)
            assert row[f"{metric}_n"] == len(v)
            assert row[f"{metric}_mean"] == pytest.approx(np.mean(v), abs=1e-12)
            assert row[f"{metric}_sd"] == pytest.approx(np.std(v, ddof=1), abs=1e-12)
            rng = cell_rng(0, "bootstrap", metric, conf, test_set, src, f"{p:g}")
            ci = st.bootstrap((v,), np.mean, n_resamples=N_BOOT, method="percentile", rng=rng).confidence_interval
            assert (row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    failed = summary[(summary.confounder == "tag") & (summary.source == "imagenet") & np.isclose(summary.p_art, 0.5)]
    assert (failed["n_failed"] == 1).all() and (failed["auc_keras_n"] == 4).all() and (failed["n_runs"] == 4).all()
    # Known values: the mean over 5 folds is the cell mean; auc is auc_keras - AUC_SHIFT.
    full = summary[(summary.source == "radimagenet") & (summary.confounder == "tag") & (summary.test_set == "ood")]
    for r in full.itertuples():
        assert r.auc_keras_mean == pytest.approx(cell_mean("tag", "ood", "radimagenet", r.p_art), abs=1e-12)
        assert r.auc_mean == pytest.approx(r.auc_keras_mean - AUC_SHIFT, abs=1e-12)
        assert r.auc_keras_sd == pytest.approx(np.std(list(FOLD_OFFSETS.values()), ddof=1), abs=1e-12)


def test_tests_equal_scipy_permutation_ttest(sweep):
    tests = pd.read_csv(sweep / "report" / "tests.csv")
    assert set(tests.metric) == {"auc", "auc_keras"}
    assert (tests.source_a == "imagenet").all() and (tests.source_b == "radimagenet").all()
    checked = 0
    for r in tests.itertuples():
        if r.t != r.t:
            continue
        a = independent_fold_values(sweep, r.confounder, r.test_set, "imagenet", r.p_art, r.metric)
        b = independent_fold_values(sweep, r.confounder, r.test_set, "radimagenet", r.p_art, r.metric)
        ref = st.ttest_ind(a, b, method=st.PermutationMethod(n_resamples=np.inf))
        assert (r.n_a, r.n_b) == (len(a), len(b)) and r.method == "exact"
        assert r.n_splits == math.comb(len(a) + len(b), len(a))
        assert r.t == pytest.approx(float(ref.statistic), rel=1e-9)
        assert r.p_value == pytest.approx(float(ref.pvalue), rel=1e-9)
        checked += 1
    assert checked > 40
    # The shortcut: tag o.o.d. at p_art >= 0.8, ImageNet far below RadImageNet at the minimum p.
    row = tests[(tests.metric == "auc_keras") & (tests.confounder == "tag") & (tests.test_set == "ood")
                & np.isclose(tests.p_art, 0.8)].iloc[0]
    assert row.t < 0 and row.p_value == pytest.approx(2 / 252)
    # The authors' printed t and p are attached where they exist (tag o.o.d. p_art 0.5).
    printed = tests[(tests.metric == "auc_keras") & (tests.confounder == "tag") & (tests.test_set == "ood")
                    & np.isclose(tests.p_art, 0.5)].iloc[0]
    assert printed.paper_t == pytest.approx(-5.01859248) and printed.paper_p == pytest.approx(0.0079365079)


def test_paper_comparison_on_paper_valued_table_is_zero(sweep):
    comp = pd.read_csv(sweep / "report" / "paper_comparison.csv")
    both = comp[comp.user_n.gt(0) & comp.paper_mean.notna()]
    full = both[~((both.confounder == "tag") & (both.source == "imagenet") & np.isclose(both.p_art, 0.5))]
    assert len(full) > 40 and np.allclose(full.difference, 0.0, atol=1e-12)
    # The cell with a failed fold has 4 folds: its mean (and difference) follows them exactly.
    cell = both[(both.confounder == "tag") & (both.test_set == "ood") & (both.source == "imagenet")
                & np.isclose(both.p_art, 0.5)].iloc[0]
    v = independent_fold_values(sweep, "tag", "ood", "imagenet", 0.5)
    assert cell.user_n == 4 and cell.difference == pytest.approx(np.mean(v) - 0.378, abs=1e-12)
    mine = comp[comp.source == "mine"]
    assert len(mine) == 18 and mine.paper_mean.isna().all() and mine.user_mean.notna().all()
    # Only the confounders the user ran are compared.
    assert set(comp.confounder) == {"tag", "xray_noise"}


def test_partial_sweep_and_own_source_in_figures_and_markdown(tmp_path):
    df = make_results(confounders=("tag", "sex"), sources=("imagenet", "radimagenet", "mine"))
    # Partial: radimagenet lacks p_art 0.2 and 0.8; sex has no i.i.d. test; one mine cell has 1 fold.
    df = df[~((df.source == "radimagenet") & df.p_art.isin([0.2, 0.8]))]
    df = df[~((df.experiment == "sex") & (df.test_set == "iid"))]
    df = df[~((df.source == "mine") & np.isclose(df.p_art, 1.0) & (df.fold > 1))]
    (tmp_path / "w").mkdir()
    df.to_csv(tmp_path / "w" / "results.csv", index=False)
    table = load_results([tmp_path / "w"])
    summary = summarize(table, n_boot=200)
    fig = figures.auc_figure(summary, "auc_keras", ["tag", "sex"], ("ood", "iid"))
    axes = fig.axes
    assert len(axes) == 4
    for ax, n_lines in zip(axes, (3, 3, 3, 0)):  # tag ood, sex ood, tag iid, sex iid (no data)
        assert len(ax.lines) == n_lines
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["ImageNet", "RadImageNet", "mine"]
    tag_ood = {ln.get_label(): ln for ln in axes[0].lines}
    assert list(tag_ood["RadImageNet"].get_xdata()) == [0.0, 0.1, 0.5, 1.0]
    assert list(tag_ood["ImageNet"].get_xdata()) == [0.0, 0.1, 0.2, 0.5, 0.8, 1.0]
    y = np.asarray(tag_ood["RadImageNet"].get_ydata(), dtype=float)
    np.testing.assert_allclose(y, [cell_mean("tag", "ood", "radimagenet", p) for p in (0, 0.1, 0.5, 1.0)])
    assert "no data" in [t.get_text() for t in axes[3].texts]
    plt.close(fig)
    one = summary[(summary.source == "mine") & np.isclose(summary.p_art, 1.0) & (summary.test_set == "ood")]
    assert (one.auc_keras_n == 1).all() and one.auc_keras_sd.isna().all() and one.auc_keras_ci_low.isna().all()
    rep = report.build_report([tmp_path / "w"], n_boot=200)
    tag_iid_md = rep.summary_md.split("**Tag, i.i.d.**")[1].split("**")[0]
    radimagenet_row = [ln for ln in tag_iid_md.splitlines() if ln.startswith("| RadImageNet")][0]
    assert radimagenet_row.count("| – ") == 2 and " 0.000 " not in radimagenet_row
    # A paper cell the partial sweep did not run: user side missing (never zero), paper side kept.
    gap = rep.comparison[(rep.comparison.confounder == "tag") & (rep.comparison.test_set == "ood")
                         & (rep.comparison.source == "radimagenet") & np.isclose(rep.comparison.p_art, 0.2)]
    assert len(gap) == 1 and gap.user_n.iloc[0] == 0 and gap.user_mean.isna().all() and gap.difference.isna().all()
    assert gap.paper_mean.iloc[0] == pytest.approx(0.79)
    assert "random" in set(rep.comparison.source)  # paper-only source of a confounder the user ran
    for fig in rep.figures.values():
        plt.close(fig)


def test_compare_option_and_missing_source_rows(tmp_path):
    write_results(tmp_path, sources=("imagenet", "mine"), p_arts=(0.0, 0.5), test_sets=("ood",))
    rep = report.build_report([tmp_path], compare=("mine", "imagenet"), n_boot=100)
    t = rep.tests[rep.tests.metric == "auc"]
    assert len(t) == 2 and (t.source_a == "mine").all() and t.t.notna().all() and t.paper_t.isna().all()
    rep2 = report.build_report([tmp_path], n_boot=100)  # default imagenet vs radimagenet: no radimagenet
    assert rep2.tests.t.isna().all() and rep2.tests.note.str.contains("too few for radimagenet").all()
    for r in (rep, rep2):
        for fig in r.figures.values():
            plt.close(fig)


def test_bad_input_is_reported_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "results.csv").write_text("experiment,source\ntag,imagenet\n")
    assert report.main(["--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "results.csv" in err and "missing column" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_module_entry_point_with_out_and_results_path(tmp_path):
    path = write_results(tmp_path / "w", confounders=("denoising",), sources=("imagenet", "radimagenet"),
                         p_arts=(0.0, 1.0), folds=(1, 2, 3), test_sets=("ood",))
    out = tmp_path / "elsewhere"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    proc = subprocess.run([sys.executable, "-m", "sourcematters_jax.results.report", "--workdir", str(path),
                           "--out", str(out), "--n-boot", "100"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "keep.txt").read_text() == "user file" and (out / "figure_main_auc.png").exists()
    assert not (tmp_path / "w" / "report").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left
    assert report.default_out(path) == tmp_path / "w" / "report"
    assert isinstance(report.build_parser().parse_args(["--workdir", "x"]).compare, list)


def test_all_failed_table_and_unknown_confounder(tmp_path):
    df = make_results(sources=("imagenet",), p_arts=(0.5,), folds=(1, 2), failed=[
        ("tag", "imagenet", 0.5, f, 812) for f in (1, 2)])
    (tmp_path / "a").mkdir()
    df.to_csv(tmp_path / "a" / "results.csv", index=False)
    rep = report.build_report([tmp_path / "a"], n_boot=50)
    assert (rep.summary.auc_keras_n == 0).all() and rep.summary.auc_keras_mean.isna().all()
    assert (rep.summary.n_failed == 2).all() and "– (2 failed)" in rep.summary_md
    other = make_results(sources=("imagenet", "radimagenet"), p_arts=(0.0, 1.0)).assign(experiment="mytask")
    (tmp_path / "b").mkdir()
    other.to_csv(tmp_path / "b" / "results.csv", index=False)
    rep2 = report.build_report([tmp_path / "b"], n_boot=50)
    assert set(rep2.figures) == {"figure_other_auc", "figure_other_auc_keras"}
    assert rep2.comparison.paper_mean.isna().all()
    for r in (rep, rep2):
        for fig in r.figures.values():
            plt.close(fig)


@pytest.mark.parametrize("argv", [["--compare", "imagenet", "imagenet"], ["--n-boot", "0"]])
def test_bad_options_exit_with_usage_error(tmp_path, argv):
    with pytest.raises(SystemExit) as exc:
        report.main(["--workdir", str(tmp_path), *argv])
    assert exc.value.code == 2


def test_demo_shaped_table_uses_runs_and_shows_the_shortcut(tmp_path):
    # As configs/demo.py: tag, random init, one fold, three seeds, p_art 0 / 0.5 / 1.
    df = make_results(sources=("random",), p_arts=(0.0, 0.5, 1.0), folds=(1,), seeds=(812, 813, 814),
                      test_sets=("iid", "ood"))
    ood = df.test_set == "ood"
    df.loc[ood, "auc"] = df.loc[ood, "p_art"].map({0.0: 0.85, 0.5: 0.30, 1.0: 0.05}) + df.loc[ood, "seed"].map(
        {812: 0.0, 813: 0.02, 814: -0.02})
    df.loc[ood, "auc_keras"] = df.loc[ood, "auc"]
    (tmp_path / "demo").mkdir()
    df.to_csv(tmp_path / "demo" / "results.csv", index=False)
    rep = report.build_report([tmp_path / "demo"], n_boot=500)
    assert (rep.summary.unit == "run").all() and (rep.summary.auc_n == 3).all()
    assert rep.summary.auc_ci_low.notna().all() and "Statistical unit: the run" in rep.page
    fig = rep.figures["figure_main_auc"]
    ood_ax, iid_ax = fig.axes
    (line,) = ood_ax.lines
    np.testing.assert_allclose(line.get_xdata(), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(line.get_ydata(), [0.85, 0.30, 0.05], atol=1e-12)
    assert len(ood_ax.collections) == 1  # the CI band
    assert len(iid_ax.lines) == 1 and min(iid_ax.lines[0].get_ydata()) > 0.6
    fixed = report.build_report([tmp_path / "demo"], n_boot=50, unit="fold")
    assert (fixed.summary.auc_n == 1).all() and fixed.summary.auc_ci_low.isna().all()
    for r in (rep, fixed):
        for f in r.figures.values():
            plt.close(f)

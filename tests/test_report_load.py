"""Reading results tables: discovery, validation errors that name the file/column, duplicates, seeds."""

import numpy as np
import pandas as pd
import pytest
from test_report_synthetic import FOLD_OFFSETS, SEED_OFFSETS, cell_mean, make_results, write_results

from sourcematters_jax.results.load import ReportInputError, find_tables, load_results, resolve_unit, unit_values


def test_workdir_file_and_sweep_root_are_found(tmp_path):
    a = write_results(tmp_path / "sweep" / "prog0", confounders=("tag",))
    b = write_results(tmp_path / "sweep" / "prog1" / "nested", confounders=("denoising",))
    assert find_tables(a) == [a]
    assert find_tables(a.parent) == [a]
    assert find_tables(tmp_path / "sweep") == [a, b]
    table = load_results([tmp_path / "sweep"])
    assert set(table.rows["experiment"]) == {"tag", "denoising"} and table.files == (a, b)
    # The same table named twice (directory and file) is read once.
    assert len(load_results([a.parent, a]).rows) == len(make_results())


def test_missing_paths_and_empty_roots_are_clear_errors(tmp_path):
    with pytest.raises(ReportInputError, match="no such file"):
        find_tables(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError, match="no results.csv"):
        find_tables(tmp_path / "empty")


@pytest.mark.parametrize(
    "content,match",
    [
        ("", "empty file"),
        ("experiment,source,p_art,fold,seed,test_set,auc,auc_keras\n", "no rows"),
        ("experiment,source,p_art,fold,seed,test_set,auc\ntag,imagenet,0,1,812,ood,0.5\n", r"missing column\(s\) \['auc_keras'\]"),
        ("experiment,source,p_art,fold,seed,test_set,auc,auc_keras\ntag,imagenet,0,one,812,ood,0.5,0.5\n", "'fold'.*'one' on line 2"),
        ("experiment,source,p_art,fold,seed,test_set,auc,auc_keras\ntag,imagenet,0,1,812,ood,high,0.5\n", "'auc'"),
        ("experiment,source,p_art,fold,seed,test_set,auc,auc_keras\ntag,imagenet,0,1.5,812,ood,0.5,0.5\n", "integers"),
    ],
)
def test_bad_tables_name_the_file_and_column(tmp_path, content, match):
    path = tmp_path / "results.csv"
    path.write_text(content)
    with pytest.raises(ReportInputError, match=match) as err:
        load_results([path])
    assert str(path) in str(err.value)


def test_unreadable_csv_names_the_file(tmp_path):
    path = tmp_path / "results.csv"
    path.write_bytes(b"\xff\xfe\x00garbage\x00\xff")
    with pytest.raises(ReportInputError, match="results.csv"):
        load_results([path])


def test_status_column_is_optional_and_empty_metrics_are_allowed(tmp_path):
    df = make_results().drop(columns=["status"])
    df.loc[0, "auc"] = np.nan
    df.to_csv(tmp_path / "results.csv", index=False)
    table = load_results([tmp_path])
    assert (table.rows["status"] == "ok").all() and table.rows["auc"].isna().sum() == 1


def test_conflicting_duplicates_are_an_error_exact_ones_are_dropped(tmp_path):
    write_results(tmp_path / "a", confounders=("tag",))
    write_results(tmp_path / "b", confounders=("tag",))
    assert len(load_results([tmp_path / "a", tmp_path / "b"]).rows) == len(make_results())
    df = make_results()
    df.loc[5, "auc_keras"] += 0.1
    df.to_csv(tmp_path / "b" / "results.csv", index=False)
    with pytest.raises(ReportInputError, match="conflicting rows.*results.csv"):
        load_results([tmp_path / "a", tmp_path / "b"])


def test_failed_runs_are_kept_apart(tmp_path):
    write_results(tmp_path, failed=[("tag", "radimagenet", 0.2, 3, 812)])
    table = load_results([tmp_path])
    assert len(table.failed) == 3 and set(table.failed["status"]) == {"nonfinite_loss"}
    assert (table.ok["status"] == "ok").all() and len(table.ok) + len(table.failed) == len(table.rows)
    folds = unit_values(table.ok, "auc")
    cell = folds[(folds.source == "radimagenet") & (folds.p_art == 0.2) & (folds.test_set == "ood")]
    assert sorted(cell["fold"]) == [1, 2, 4, 5]


def test_unit_values_average_seeds_within_folds_or_keep_runs(tmp_path):
    write_results(tmp_path, seeds=(812, 813, 814), sources=("imagenet",), p_arts=(0.5,))
    ok = load_results([tmp_path]).ok
    assert resolve_unit(ok) == "fold" and resolve_unit(ok[ok.fold == 1]) == "run"
    assert resolve_unit(ok[ok.fold == 1], "fold") == "fold"
    runs = unit_values(ok, "auc_keras", "run")
    assert len(runs[runs.test_set == "ood"]) == 15 and (runs.n_seeds == 1).all()
    folds = unit_values(ok, "auc_keras")
    ood = folds[folds["test_set"] == "ood"].set_index("fold")
    assert (ood["n_seeds"] == 3).all() and len(ood) == 5
    for fold, offset in FOLD_OFFSETS.items():
        seeds = [cell_mean("tag", "ood", "imagenet", 0.5) + offset + s for s in SEED_OFFSETS.values()]
        assert ood.loc[fold, "value"] == pytest.approx(np.mean(seeds), abs=1e-12)
    assert isinstance(folds, pd.DataFrame)

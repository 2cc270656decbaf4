"""atomic_files: a failed write leaves the old output (or none) and no temporary; a good one lands."""

import json
import pathlib

import pandas as pd
import pytest

from sourcematters_jax import atomic_files


class Boom(RuntimeError):
    pass


def _names(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_file_writers_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "record.json"
    atomic_files.write_json(path, {"b": 1, "a": [1, 2]})
    assert path.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=1, sort_keys=True) + "\n"
    atomic_files.write_text(path, "new")
    assert path.read_text() == "new" and _names(tmp_path) == ["record.json"]
    csv = atomic_files.write_csv(tmp_path / "t.csv", pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}))
    assert csv.read_text().splitlines() == ["x,y", "1,a", "2,b"]  # no index column
    atomic_files.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert _names(tmp_path) == ["b.bin", "record.json", "t.csv"]


def test_file_writer_failing_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("old complete table\n")
    with pytest.raises(Boom):
        with atomic_files.replacing(path) as tmp:
            tmp.write_text("half of the new ta")
            raise Boom("killed mid-write")
    assert path.read_text() == "old complete table\n"
    assert _names(tmp_path) == ["results.csv"]  # the half-written temporary is gone

    class Unserializable:
        pass

    with pytest.raises(TypeError):  # json.dumps fails before anything is written
        atomic_files.write_json(path, {"a": Unserializable()})
    assert path.read_text() == "old complete table\n" and _names(tmp_path) == ["results.csv"]


def test_replacing_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    with atomic_files.replacing(tmp_path / "w.h5", suffix=".h5") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".w.h5.tmp-") and tmp.suffix == ".h5"
        assert not tmp.exists()
        tmp.write_bytes(b"h5")
    assert _names(tmp_path) == ["w.h5"]


def test_new_directory_renames_on_success(tmp_path):
    target = tmp_path / "parent" / "out"  # missing parents are created
    with atomic_files.new_directory(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".out.tmp-") and not target.exists()
        (tmp / "sub").mkdir()
        (tmp / "sub" / "f.txt").write_text("x")
    assert (target / "sub" / "f.txt").read_text() == "x"
    assert _names(target.parent) == ["out"]


def test_new_directory_failure_leaves_nothing(tmp_path):
    with pytest.raises(Boom):
        with atomic_files.new_directory(tmp_path / "out") as tmp:
            (tmp / "half.txt").write_text("x")
            raise Boom("failed halfway")
    assert _names(tmp_path) == []


def test_new_directory_refuses_an_existing_target_unless_replacing(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match=f"{target} exists"):
        with atomic_files.new_directory(target):
            pytest.fail("the block must not run")
    assert _names(target) == ["old.txt"] and _names(tmp_path) == ["out"]

    with pytest.raises(Boom):  # a failed replacement keeps the old directory
        with atomic_files.new_directory(target, replace=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise Boom
    assert _names(target) == ["old.txt"] and _names(tmp_path) == ["out"]

    with atomic_files.new_directory(target, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert _names(target) == ["new.txt"] and _names(tmp_path) == ["out"]  # old one removed


def test_new_directory_refuses_a_target_another_writer_created_meanwhile(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(FileExistsError, match="another writer"):
        with atomic_files.new_directory(target) as tmp:
            (tmp / "mine.txt").write_text("mine")
            target.mkdir()  # a concurrent writer finished first (even an empty dir is kept)
            (target / "theirs.txt").write_text("theirs")
    assert _names(target) == ["theirs.txt"] and _names(tmp_path) == ["out"]


def test_write_into_merges_files_and_failure_touches_nothing(tmp_path):
    out = tmp_path / "out"

    def fail(tmp: pathlib.Path) -> None:
        (tmp / "a.csv").write_text("half")
        raise Boom("failed halfway")

    with pytest.raises(Boom):
        atomic_files.write_into(out, fail)
    assert _names(tmp_path) == []  # out not even created

    out.mkdir()
    (out / "keep.txt").write_text("kept")
    (out / "maps").mkdir()
    (out / "maps" / "stale.png").write_text("stale")

    def write(tmp: pathlib.Path) -> None:
        (tmp / "a.csv").write_text("new")
        (tmp / "maps").mkdir()
        (tmp / "maps" / "m.png").write_text("m")

    written = atomic_files.write_into(out, write)
    assert written == [out / "a.csv", out / "maps"]
    assert _names(out) == ["a.csv", "keep.txt", "maps"] and _names(out / "maps") == ["m.png"]
    assert _names(tmp_path) == ["out"]

"""The install's packages: one top-level import name, every package listed, top-level folders mapped.

`pyproject.toml` lists the packages explicitly (the launcher, configs and weight converter live in
top-level folders but install as `sourcematters_jax.launch`, `.configs`, `.convert_weights`); a
new subpackage that is not listed would be missing from a non-editable install.
"""

import pathlib
import tomllib

import setuptools

REPO = pathlib.Path(__file__).resolve().parents[1]
MAPPED = {"launch": "sourcematters_jax.launch", "configs": "sourcematters_jax.configs",
          "convert_weights": "sourcematters_jax.convert_weights"}


def _setuptools_table():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_is_listed_under_one_top_level_name():
    table = _setuptools_table()
    on_disk = set(setuptools.find_packages(str(REPO), include=["sourcematters_jax*"]))
    for folder, name in MAPPED.items():
        on_disk |= {name + sub[len(folder):] for sub in setuptools.find_packages(str(REPO), include=[folder, folder + ".*"])}
    assert set(table["packages"]) == on_disk
    assert {p.split(".")[0] for p in table["packages"]} == {"sourcematters_jax"}


def test_top_level_folders_are_mapped_into_the_namespace():
    assert _setuptools_table()["package-dir"] == {name: folder for folder, name in MAPPED.items()}


def test_the_mapped_packages_import_from_the_top_level_folders():
    import sourcematters_jax.configs.tag
    import sourcematters_jax.convert_weights.cli
    import sourcematters_jax.launch.sweep

    for module, folder in ((sourcematters_jax.launch.sweep, "launch"),
                           (sourcematters_jax.configs.tag, "configs"),
                           (sourcematters_jax.convert_weights.cli, "convert_weights")):
        assert pathlib.Path(module.__file__).resolve().parent == REPO / folder

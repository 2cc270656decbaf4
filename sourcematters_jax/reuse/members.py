"""Finished members of a sweep root or program workdir: find, choose and load their best weights.

A `--workdir` is either a program workdir (config.json, checkpoints/, results.csv, written by
`train_and_evaluate`) or a sweep root (sweep.json naming its programs, `launch/plan.py`). The
members each program trains come from its recorded config (the sweep's expansion and
`member_indices`), so a program that never finished is still named in errors. A member is
reusable only when its program is finished (results.csv covers every member of the program):
before that the checkpoint's best state may still change.

`load(...)` gives every chosen member's best classifier variables (no optimizer state), its
member row and what its program recorded (training config, epochs trained, status), ready for
`reuse.runner` to pack on devices like training.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Sequence

import ml_collections
import pandas as pd

from sourcematters_jax.members import Member, expand_sweep
from sourcematters_jax.train import checkpoints, results
from sourcematters_jax.train import config as config_lib
from sourcematters_jax.train.loop import CONFIG_FILE

MANIFEST = "sweep.json"  # launch.plan.MANIFEST (not imported: launch depends on this package)


class ReuseInputError(ValueError):
    """A workdir, member or config cannot be reused; the message names it."""


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity
class ProgramDir:
    """One program workdir, its recorded config (as a dict) and the (index, Member)s it trains."""

    workdir: pathlib.Path
    config: dict[str, Any]
    members: tuple[tuple[int, Member], ...]

    @property
    def finished(self) -> bool:
        return results.is_complete(self.workdir / results.RESULTS_FILE,
                                   [m.member_id for _, m in self.members])


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedMember:
    """A finished member's best weights and what its program recorded about it."""

    row: dict[str, Any]  # member_index, member_id, Member fields, preprocessing
    variables: dict[str, Any]  # {'params': {'backbone', 'head'}, 'batch_stats': {'backbone'}}
    model: dict[str, Any]  # stage_sizes, width, dtype
    image_size: int
    best_epoch: int
    best_val_loss: float
    epochs_trained: int
    status: str
    program: ProgramDir

    @property
    def member(self) -> Member:
        return Member(**{k: self.row[k] for k in ("experiment", "source", "p_art", "fold", "seed")})

    @property
    def member_id(self) -> str:
        return self.row["member_id"]

    def program_config(self, data_dir: str | None = None) -> ml_collections.ConfigDict:
        """The config the member's program trained with (see `training_config`)."""
        return training_config(self, data_dir)

    @property
    def trained_on(self) -> str:
        """'experiment/dataset' the member was trained on (the results table's trained_on)."""
        return f"{self.row['experiment']}/{self.program.config['dataset']}"


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ReuseInputError(f"{path}: cannot read ({e})") from None


def _program(workdir: pathlib.Path, config: dict[str, Any] | None = None) -> ProgramDir:
    if config is None:
        config = _read_json(workdir / CONFIG_FILE)
    try:
        sweep = expand_sweep(config["sweep"])
        indices = config_lib.parse_member_indices(config.get("member_indices", ""), len(sweep))
    except (KeyError, ValueError, IndexError) as e:
        raise ReuseInputError(f"{workdir / CONFIG_FILE}: not a training config ({e})") from None
    indices = range(len(sweep)) if indices is None else indices
    return ProgramDir(workdir, config, tuple((i, sweep[i]) for i in indices))


def find_programs(path: str | pathlib.Path) -> list[ProgramDir]:
    """The program workdirs under a sweep root, or the one program workdir `path` is."""
    path = pathlib.Path(path).absolute()
    if (path / MANIFEST).is_file():
        manifest = _read_json(path / MANIFEST)
        programs = []
        for p in manifest.get("programs", []):
            config = {**manifest["config"], "member_indices": p["member_indices"]}
            programs.append(_program(path / p["name"], config))
        if not programs:
            raise ReuseInputError(f"{path / MANIFEST}: the sweep has no programs")
        return programs
    if (path / CONFIG_FILE).is_file():
        return [_program(path)]
    raise ReuseInputError(f"{path}: neither a sweep root ({MANIFEST}) nor a program workdir "
                          f"({CONFIG_FILE}); pass the directory `sourcematters sweep --root` or "
                          "`sourcematters train --workdir` wrote")


def choose(programs: Sequence[ProgramDir], wanted: Sequence[str] | None
           ) -> list[tuple[ProgramDir, int, Member]]:
    """(program, sweep index, Member) of the wanted member ids (all when None or empty).

    Raises ReuseInputError naming unknown members, or the unfinished programs that hold chosen
    members (nothing is loaded from a program still training).
    """
    everything = [(p, i, m) for p in programs for i, m in p.members]
    by_id = {m.member_id: (p, i, m) for p, i, m in everything}
    if wanted:
        unknown = [w for w in wanted if w not in by_id]
        if unknown:
            known = list(by_id)
            more = f", ... ({len(known)} in all)" if len(known) > 12 else ""
            shown = ", ".join(known[:12]) + more
            raise ReuseInputError(f"unknown member(s) {unknown}; this workdir has: {shown}")
        chosen = [by_id[w] for w in dict.fromkeys(wanted)]
    else:
        chosen = everything
    unfinished = sorted({str(p.workdir) for p, _, _ in chosen if not p.finished})
    if unfinished:
        raise ReuseInputError(f"program(s) not finished (no complete {results.RESULTS_FILE}): "
                              f"{unfinished}; finish training first, or choose members of "
                              "finished programs with --member")
    return chosen


def load(path: str | pathlib.Path, wanted: Sequence[str] | None = None) -> list[LoadedMember]:
    """Every chosen finished member's best state, restoring each program's checkpoint once."""
    chosen = choose(find_programs(path), wanted)
    loaded: list[LoadedMember] = []
    for program in dict.fromkeys(p for p, _, _ in chosen):
        ids = [m.member_id for p, _, m in chosen if p is program]
        table = pd.read_csv(program.workdir / results.RESULTS_FILE)
        states = checkpoints.load_members(program.workdir, ids)
        for member_id, (variables, meta) in zip(ids, states):
            rec = table[table["member_id"] == member_id].iloc[0]
            loaded.append(LoadedMember(
                row=dict(meta["member"]), variables=variables, model=dict(meta["model"]),
                image_size=int(meta["image_size"]), best_epoch=meta["best_epoch"],
                best_val_loss=meta["best_val_loss"], epochs_trained=int(rec["epochs_trained"]),
                status=str(rec["status"]), program=program))
    order = {m.member_id: k for k, (_, _, m) in enumerate(chosen)}
    return sorted(loaded, key=lambda lm: order[lm.member_id])


def check_compatible(members: Sequence[LoadedMember], config: ml_collections.ConfigDict,
                     where: str) -> None:
    """Raise ReuseInputError unless every member's image size and model equal the config's.

    Members are run with the config's data at its image size: a member trained at another size
    or with another architecture cannot load into the config's model. `where` names the config.
    """
    want_model = {"stage_sizes": list(config.model.stage_sizes), "width": int(config.model.width)}
    bad = []
    for lm in members:
        have_model = {"stage_sizes": list(lm.model["stage_sizes"]), "width": int(lm.model["width"])}
        if lm.image_size != int(config.image_size):
            bad.append(f"{lm.member_id}: image_size {lm.image_size} (config.image_size "
                       f"{config.image_size})")
        if have_model != want_model:
            bad.append(f"{lm.member_id}: model {have_model} (config.model {want_model})")
    if bad:
        raise ReuseInputError(f"{where} does not match the members: " + "; ".join(bad))


def training_config(member: LoadedMember, data_dir: str | None = None
                    ) -> ml_collections.ConfigDict:
    """The config the member's program trained with (from its workdir or sweep manifest).

    A program's config.json leaves out runtime fields (data_dir among them); a sweep manifest
    keeps them. `data_dir` replaces the recorded data directory.
    """
    def tuples(value: Any) -> Any:  # JSON lists back to the config's tuples
        if isinstance(value, dict):
            return {k: tuples(v) for k, v in value.items()}
        return tuple(tuples(v) for v in value) if isinstance(value, list) else value

    config = config_lib.base_config()
    with config.unlocked():
        config.update(ml_collections.ConfigDict(tuples(member.program.config)))
        if data_dir is not None:
            config.data_dir = str(data_dir)
    return config

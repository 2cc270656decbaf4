"""A sweep as programs: expand the config's sweep, pack members into programs, keep a manifest.

The members of a sweep come from `sourcematters_jax.members.expand_sweep(config.sweep)` in its fixed
order. Packing cuts that list into programs of at most `capacity` members each (the capacity
comes from the memory budget, see `launch.memory`): members of one experiment stay together (a
program loads one image pool), and within an experiment the programs are balanced (their sizes
differ by at most one). Every program is a contiguous range, so its `member_indices` is
'start:stop'.

The sweep root holds `sweep.json`, the manifest: how the config was given (spec and overrides),
the full config, the member table and the program -> member range map. Program k works in
`ROOT/program_{k:03d}/`. Launching again into the same root checks the config and members are
unchanged (an error names the keys that differ) and keeps the manifest's packing, so a resumed
sweep never reshuffles members between programs. When the capacity came from the memory plan,
its execution choices (`notes['execution']`: group size, remat) are written into every program's
config, so programs run what was planned. A program is finished when its workdir holds a
`results.csv` that covers all its member ids; finished programs are skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import os
import pathlib
from typing import Any, Sequence

import ml_collections

from sourcematters_jax import atomic_files
from sourcematters_jax.launch import config_io
from sourcematters_jax.members import MEMBER_FIELDS, Member, expand_sweep

MANIFEST = "sweep.json"
RESULTS = "results.csv"


@dataclasses.dataclass(frozen=True)
class Program:
    """One training program: a contiguous range of sweep members sharing one experiment."""

    index: int
    start: int
    stop: int
    experiment: str

    @property
    def name(self) -> str:
        return f"program_{self.index:03d}"

    @property
    def member_indices(self) -> str:
        """The value of `config.member_indices` for this program."""
        return f"{self.start}:{self.stop}"

    @property
    def size(self) -> int:
        return self.stop - self.start


def sweep_members(config: ml_collections.ConfigDict) -> list[Member]:
    """All members of the config's sweep, in `expand_sweep` order."""
    return expand_sweep({field: config.sweep[field] for field in config.sweep.keys()})


def pack(members: Sequence[Member], capacity: int) -> list[Program]:
    """Cut `members` into programs of at most `capacity`, one experiment each, balanced.

    Each maximal run of consecutive members with the same experiment is split into
    ceil(n / capacity) contiguous programs whose sizes differ by at most one.
    """
    if capacity < 1:
        raise ValueError(f"program capacity must be >= 1 member, got {capacity}")
    programs: list[Program] = []
    start = 0
    while start < len(members):
        experiment = members[start].experiment
        stop = start
        while stop < len(members) and members[stop].experiment == experiment:
            stop += 1
        n = stop - start
        parts = math.ceil(n / capacity)
        base, extra = divmod(n, parts)
        for part in range(parts):
            size = base + (1 if part < extra else 0)
            programs.append(Program(len(programs), start, start + size, experiment))
            start += size
    return programs


@dataclasses.dataclass
class Plan:
    """A sweep's members, its programs and where they run."""

    root: pathlib.Path
    config: ml_collections.ConfigDict
    members: list[Member]
    programs: list[Program]
    config_spec: str = ""
    overrides: tuple[str, ...] = ()
    capacity: int = 0
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)

    def workdir(self, program: Program) -> pathlib.Path:
        return self.root / program.name

    def program_members(self, program: Program) -> list[Member]:
        return self.members[program.start:program.stop]

    def program_config(self, program: Program) -> ml_collections.ConfigDict:
        """The config a program trains with: the sweep's config with its member range."""
        config = self.config.copy_and_resolve_references()
        config.member_indices = program.member_indices
        # How the planner sized the program (G of 'groups', remat): runtime-only fields.
        for field, value in self.notes.get("execution", {}).items():
            config.execution[field] = value
        config.lock()
        return config

    def is_finished(self, program: Program) -> bool:
        return results_cover(self.workdir(program) / RESULTS, self.program_members(program))

    def pending(self) -> list[Program]:
        return [p for p in self.programs if not self.is_finished(p)]

    def to_manifest(self) -> dict[str, Any]:
        return {
            "config_spec": self.config_spec,
            "overrides": list(self.overrides),
            "config": config_io.config_to_dict(self.config),
            "capacity": self.capacity,
            "notes": self.notes,
            "members": [m.as_row() for m in self.members],
            "programs": [dict(index=p.index, name=p.name, member_indices=p.member_indices,
                              experiment=p.experiment, size=p.size) for p in self.programs],
        }


def results_cover(path: pathlib.Path, members: Sequence[Member]) -> bool:
    """Whether `path` is a results.csv with rows for every member and test set (the trainer's test)."""
    from sourcematters_jax.train.results import is_complete

    return is_complete(path, [m.member_id for m in members])


def make_plan(root: str | os.PathLike, config: ml_collections.ConfigDict, capacity: int, *,
              config_spec: str = "", overrides: Sequence[str] = (),
              notes: dict[str, Any] | None = None) -> Plan:
    """Expand and pack `config`'s sweep; if `root` already holds a manifest, check and reuse it.

    Raises:
      ValueError: `root` holds a different sweep (the message names the differing config keys),
        or the config restricts `member_indices` (a sweep packs all of its members).
    """
    root = pathlib.Path(root).absolute()
    if config.member_indices:
        raise ValueError(f"config.member_indices={config.member_indices!r}: a sweep packs all members "
                         "itself; leave member_indices empty")
    members = sweep_members(config)
    plan = Plan(root, config, members, pack(members, capacity), config_spec=config_spec,
                overrides=tuple(overrides), capacity=capacity, notes=dict(notes or {}))
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        differ = config_io.diff_configs(old["config"], config_io.config_to_dict(config))
        if differ:
            raise ValueError(f"{root} holds a different sweep: config keys differ: {', '.join(differ)}. "
                             "Relaunch with the same config, or choose a new root.")
        if [r["member_id"] for r in old["members"]] != [m.member_id for m in members]:
            raise ValueError(f"{root} holds a different sweep: its member list differs")
        plan.programs = [Program(p["index"], *map(int, p["member_indices"].split(":")), p["experiment"])
                         for p in old["programs"]]
        plan.capacity, plan.notes = old["capacity"], old.get("notes", {})
    return plan


def write_manifest(plan: Plan) -> pathlib.Path:
    """Write `ROOT/sweep.json` unless it exists (then `make_plan` has checked it)."""
    path = plan.root / MANIFEST
    if not path.exists():
        plan.root.mkdir(parents=True, exist_ok=True)
        manifest = plan.to_manifest()
        manifest["created"] = datetime.datetime.now().isoformat(timespec="seconds")
        atomic_files.write_text(path, json.dumps(manifest, indent=1))
    return path


def load_plan(root: str | os.PathLike, config: ml_collections.ConfigDict | None = None) -> Plan:
    """The plan of an existing sweep root.

    Without `config`, the config is rebuilt from the manifest's spec and overrides (relative paths
    resolve against the current directory); either way it must equal the recorded config, so a
    worker with a changed checkout fails loudly instead of training something else.
    """
    root = pathlib.Path(root).absolute()
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no sweep manifest {path}; launch the sweep first")
    manifest = json.loads(path.read_text())
    if config is None:
        if not manifest["config_spec"]:
            raise ValueError(f"{path} records no config file; pass the config in-process")
        config = config_io.load_config(manifest["config_spec"], manifest["overrides"])
    return make_plan(root, config, manifest["capacity"], config_spec=manifest["config_spec"],
                     overrides=manifest["overrides"])


def collect_results(plan: Plan) -> pathlib.Path | None:
    """Concatenate finished programs' results.csv into `ROOT/results.csv` (None if none finished).

    The union of columns is kept (programs may differ, e.g. a status column); rows keep program
    order, so the table follows the sweep's member order.
    """
    rows: list[dict[str, str]] = []
    columns: list[str] = []
    for program in plan.programs:
        if not plan.is_finished(program):
            continue
        with open(plan.workdir(program) / RESULTS, newline="") as f:
            reader = csv.DictReader(f)
            columns += [c for c in reader.fieldnames or () if c not in columns]
            rows.extend(reader)
    if not rows:
        return None
    out = plan.root / RESULTS
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return out


def member_table(members: Sequence[Member]) -> list[dict[str, Any]]:
    """Rows of the member fields (plus member_index and member_id), e.g. for printing a sweep."""
    return [{"member_index": i, "member_id": m.member_id, **{f: getattr(m, f) for f in MEMBER_FIELDS}}
            for i, m in enumerate(members)]

"""What `export` can read: a backbone checkpoint, a training workdir's member, an exported member.

  converted checkpoint   a directory written by `convert_weights` or `pretrain` (metadata.json
                         with format `sourcematters_jax.pretrained`, read by `pretrained.load`)
  training workdir       WORKDIR/checkpoints/ of `sourcematters train`; one member's best
                         weights (`train.checkpoints.load_member`), chosen with --member
  exported member        a directory written by `train.checkpoints.export_member`
                         (format `sourcematters_jax.member`)

Each gives an `ExportSource`: the backbone's architecture and variables, the member's Dense
head where there is one, and a JSON record of where the weights came from (stored in the .h5).
Every variable is checked against the architecture's shapes and for finite values first.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import numpy as np
from flax import traverse_util

from sourcematters_jax.convert_weights.errors import ConversionError
from sourcematters_jax import pretrained, variables_io
from sourcematters_jax.train import checkpoints


@dataclasses.dataclass
class ExportSource:
    """Weights to export.

    Attributes:
      kind: 'backbone' (converted checkpoint) or 'member' (fine-tuned classifier).
      architecture: {'family', 'stage_sizes', 'width'} as in checkpoint metadata.
      backbone: {'params', 'batch_stats'} of `models.ResNet`, float32 numpy.
      head: the member's Dense params {'kernel', 'bias'}; None for a backbone.
      record: JSON-able provenance: source, preprocessing, member row, best epoch, ...
    """

    kind: str
    architecture: dict[str, Any]
    backbone: dict[str, Any]
    head: dict[str, np.ndarray] | None
    record: dict[str, Any]


def load_source(input_dir: str | pathlib.Path, member: str | None = None) -> ExportSource:
    """Reads the weights at `input_dir` (see the module docstring); raises ConversionError."""
    input_dir = pathlib.Path(input_dir)
    if not input_dir.is_dir():
        raise ConversionError(f"--input {input_dir}: no such directory")
    if pretrained.is_checkpoint(input_dir):
        if member is not None:
            raise ConversionError(f"--input {input_dir} is a converted backbone checkpoint; "
                                  "--member applies to training workdirs only")
        return _backbone(input_dir)
    exported = _exported_format(input_dir)
    if exported == checkpoints.EXPORT_FORMAT:
        try:
            variables, metadata = checkpoints.read_exported(input_dir)
        except (OSError, ValueError) as e:
            raise ConversionError(f"{input_dir}: cannot read the exported member ({e})") from None
        return _member(input_dir, variables, metadata, member)
    if (input_dir / checkpoints.CHECKPOINT_DIR).is_dir():
        return _workdir_member(input_dir, member)
    found = (f"(its metadata.json has format {exported!r})" if exported
             else f"(no readable metadata.json, no {checkpoints.CHECKPOINT_DIR}/)")
    raise ConversionError(f"--input {input_dir} is neither a converted backbone checkpoint, nor "
                          f"a training workdir, nor an exported member {found}")


def _exported_format(directory: pathlib.Path) -> str | None:
    try:
        return str(variables_io.read_metadata(directory, "").get("format"))
    except (OSError, ValueError):
        return None


def _backbone(directory: pathlib.Path) -> ExportSource:
    try:
        variables, metadata = pretrained.load(directory)
    except (OSError, ValueError) as e:
        raise ConversionError(f"{directory}: cannot load the checkpoint ({e})") from None
    _check_finite(variables, str(directory))
    keep = ("source", "preprocessing", "dataset", "input_file", "input_sha256")
    record = {"kind": "backbone", "input": directory.absolute().name,
              **{k: metadata[k] for k in keep if k in metadata}}
    return ExportSource("backbone", dict(metadata["architecture"]), variables, None, record)


def _workdir_member(workdir: pathlib.Path, member: str | None) -> ExportSource:
    if member is None:
        ids = _member_ids(workdir)
        raise ConversionError(f"--input {workdir} is a training workdir; pass --member ID "
                              f"(one of {ids})")
    try:
        variables, metadata = checkpoints.load_member(
            workdir, int(member) if member.isdigit() else member)
    except KeyError as e:
        raise ConversionError(f"--member {member}: {e.args[0]}") from None
    except (OSError, ValueError) as e:
        raise ConversionError(f"{workdir}: cannot read the checkpoint ({e})") from None
    return _member(workdir, variables, metadata, None)


def _member_ids(workdir: pathlib.Path) -> list[str]:
    try:
        ckpt = checkpoints.ProgramCheckpoints(workdir, read_only=True)
        try:
            _, members = ckpt.restore_best()
        finally:
            ckpt.close()
    except (OSError, ValueError, KeyError) as e:
        raise ConversionError(f"{workdir}: cannot read the checkpoint ({e})") from None
    return [row["member_id"] for row in members["members"]]


def _member(where: pathlib.Path, variables: dict[str, Any], metadata: dict[str, Any],
            member: str | None) -> ExportSource:
    if member is not None:
        raise ConversionError(f"--input {where} is an exported member; --member applies to "
                              "training workdirs only")
    row = metadata["member"]
    if int(metadata.get("best_epoch", 0)) < 1:
        raise ConversionError(f"{where}: member {row['member_id']!r} has no best weights "
                              "(best_epoch 0: no epoch ended with a finite validation loss)")
    model = metadata["model"]
    architecture = {"family": pretrained.ARCH_FAMILY,
                    "stage_sizes": [int(s) for s in model["stage_sizes"]],
                    "width": int(model["width"])}
    try:
        backbone = {c: variables[c]["backbone"] for c in pretrained.COLLECTIONS}
        head = dict(variables["params"]["head"])
    except KeyError as e:
        raise ConversionError(f"{where}: member variables lack {e}; not a classifier "
                              "{'params': {'backbone', 'head'}}") from None
    problems = pretrained.tree_mismatches(pretrained.expected_shapes(architecture), backbone)
    num_features = pretrained.module_for(architecture).num_features
    kernel = np.shape(head.get("kernel"))
    if set(head) != {"kernel", "bias"} or len(kernel) != 2 or kernel[0] != num_features \
            or np.shape(head["bias"]) != kernel[1:]:
        problems.append(f"head has {({k: np.shape(v) for k, v in head.items()})}, expected "
                        f"kernel [{num_features}, classes] and bias [classes]")
    if problems:
        raise ConversionError(f"{where}: member {row['member_id']!r} does not match its model "
                              f"{architecture}:\n  " + "\n  ".join(problems))
    _check_finite({"backbone": backbone, "head": head}, f"{where} member {row['member_id']!r}")
    record = {"kind": "member", "input": where.absolute().name, "member": row,
              "source": row.get("source"), "preprocessing": metadata["preprocessing"],
              "image_size": metadata.get("image_size"), "best_epoch": metadata["best_epoch"],
              "best_val_loss": metadata["best_val_loss"]}
    return ExportSource("member", architecture, backbone, head, record)


def _check_finite(tree: dict[str, Any], where: str) -> None:
    bad = sorted("/".join(k) for k, v in traverse_util.flatten_dict(tree).items()
                 if not np.all(np.isfinite(np.asarray(v))))
    if bad:
        raise ConversionError(f"{where}: {len(bad)} tensor(s) hold NaN or inf values, e.g. "
                              f"{bad[0]}; refusing to export them")

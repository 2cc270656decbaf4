"""Command line: sourcematters export --input DIR --output FILE.h5 [--member ID] [--include-head]

Also `python -m sourcematters_jax.convert_weights.export_cli`. See convert_weights/export.py and
docs/convert_weights.md ("Export to Keras").
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from sourcematters_jax.convert_weights import cli as convert_cli
from sourcematters_jax.convert_weights.errors import ConversionError
from sourcematters_jax.convert_weights.export import export


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sourcematters export",
        description="Export a backbone checkpoint (from convert or pretrain) or a fine-tuned "
                    "member's best weights to a Keras .h5 weight file in the keras-applications "
                    "layout: keras.applications.ResNet50(weights=None, include_top=False, "
                    "pooling='avg').load_weights(FILE) reads it, and so does convert.")
    parser.add_argument("--input", required=True,
                        help="a converted checkpoint directory, a training workdir (with "
                             "--member), or a member directory written by export_member")
    parser.add_argument("--output", required=True,
                        help="the .h5 file to write (not .weights.h5: Keras reads that suffix "
                             "as its own Keras 3 format)")
    parser.add_argument("--member",
                        help="member_id or sweep member_index of the member to export from a "
                             "training workdir (its best-validation-loss weights)")
    parser.add_argument("--include-head", action="store_true",
                        help="members only: also write the Dense(2) softmax head as the "
                             "'predictions' layer, for keras.applications.ResNet50(weights=None, "
                             "include_top=True, classes=2); convert reads backbone-only files")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing HDF5 file at --output")
    convert_cli.add_verify_flags(
        parser, "load the written file with Keras (needs keras) and compare its outputs with the "
        "Flax model's; nothing is written if they differ", compared="output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the export; returns the exit status (0 ok, 2 refused)."""
    args = build_parser().parse_args(argv)
    try:
        record = export(args.input, args.output, member=args.member,
                        include_head=args.include_head, overwrite=args.overwrite,
                        verify=args.verify, verify_image_size=args.verify_image_size,
                        verify_tolerance=args.verify_tolerance)
    except ConversionError as e:
        print(f"sourcematters export: error: {e}", file=sys.stderr)
        return 2
    arch = record["architecture"]
    what = record["member"]["member_id"] if record["kind"] == "member" else "backbone"
    print(f"wrote {args.output}: {what} source={record.get('source')} "
          f"preprocessing={record.get('preprocessing')} stage_sizes={arch['stage_sizes']} "
          f"width={arch['width']} head={'yes' if record['include_head'] else 'no'}")
    if "verified_with_keras" in record:
        print(f"Keras parity: max abs diff {record['verified_with_keras']['max_abs_diff']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

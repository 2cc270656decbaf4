"""Command line: python -m sourcematters_jax.convert_weights --input FILE.h5 --output DIR [--source NAME] ..."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from sourcematters_jax.convert_weights.convert import convert
from sourcematters_jax.convert_weights.errors import ConversionError
from sourcematters_jax import cli_errors, preprocessing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sourcematters_jax.convert_weights",
        description="Convert Keras ResNet50 (v1) weights (.h5) into a Flax/Orbax checkpoint for "
                    "sourcematters_jax. Reads legacy Keras weight files (keras-applications), "
                    "legacy full-model files (RadImageNet) and Keras 3 .weights.h5 files.")
    parser.add_argument("--input", required=True, help="Keras .h5 weight file")
    parser.add_argument("--output", required=True, help="checkpoint directory to create")
    parser.add_argument("--source", help="source name (imagenet, radimagenet, or your own); "
                                         "default: recognised from the study's file names")
    parser.add_argument("--preprocessing", choices=preprocessing.MODES,
                        help="input preprocessing the source expects (default: caffe for "
                             "imagenet, caffe_div255 for radimagenet; required for others)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing converted checkpoint at --output")
    add_verify_flags(parser, "also load the file with Keras (needs keras) and compare features",
                     compared="feature")
    return parser


def add_verify_flags(parser: argparse.ArgumentParser, verify_help: str, compared: str) -> None:
    """--verify, --verify-image-size, --verify-tolerance: the Keras check, shared by convert and
    export (`compared` names what is compared: 'feature' or 'output')."""
    parser.add_argument("--verify", action="store_true", help=verify_help)
    parser.add_argument("--verify-image-size", type=int, default=64,
                        help="side (pixels) of the random input used by --verify (default 64)")
    parser.add_argument("--verify-tolerance", type=float, default=1e-4,
                        help=f"largest max-abs {compared} difference --verify accepts (default 1e-4)")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the converter; returns the exit status (0 ok, 2 refused, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    return cli_errors.guard("sourcematters_jax.convert_weights", _convert, args)


def _convert(args: argparse.Namespace) -> int:
    try:
        meta = convert(args.input, args.output, source=args.source,
                       preprocessing_mode=args.preprocessing, overwrite=args.overwrite,
                       verify=args.verify, verify_image_size=args.verify_image_size,
                       verify_tolerance=args.verify_tolerance)
    except ConversionError as e:
        print(f"convert_weights: error: {e}", file=sys.stderr)
        return 2
    arch = meta["architecture"]
    print(f"wrote {args.output}: source={meta['source']} preprocessing={meta['preprocessing']} "
          f"layout={meta['input_layout']} stage_sizes={arch['stage_sizes']} "
          f"width={arch['width']} sha256={meta['input_sha256'][:12]}")
    if "verified_with_keras" in meta:
        print(f"Keras parity: max abs diff {meta['verified_with_keras']['max_abs_diff']:.3g}")
    return 0

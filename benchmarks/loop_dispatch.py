r"""Host-side cost of the 'loop' placed view per training step: slicing and reassembling trees.

The 'loop' runner slices member m's (state, summed, data) out of `PerMember` trees for each
jitted call and reassembles the outputs (`train.placed.split` / `assemble`). This times exactly
that tree work for a ResNet train state (the real `init_member` tree structure from
`jax.eval_shape`, with scalar leaves so only the Python tree traversal is measured), against
the step it wraps (not run here: see benchmarks/member_throughput.py for step times).

  python -m benchmarks.loop_dispatch --members=8 --stage_sizes=3,4,6,3 --width=64

Prints `leaves <n>, members <M>: slice+assemble <ms> ms per step (median of <reps>)`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from sourcematters_jax.train import placed, state as st


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=8, help="members in the program")
    parser.add_argument("--stage_sizes", default="3,4,6,3", help="ResNet blocks per stage")
    parser.add_argument("--width", type=int, default=64, help="ResNet base width (64 = ResNet50)")
    parser.add_argument("--reps", type=int, default=20, help="timed repetitions")
    args = parser.parse_args(argv)
    model = st.build_model({"stage_sizes": tuple(int(s) for s in args.stage_sizes.split(",")),
                            "width": args.width, "dtype": "float32"}, 0.0)
    tx = st.make_optimizer(1e-3, 0.9, 0.999, 1e-7)
    inputs = st.MemberInit(seed=np.int32(0), source_slot=np.int32(-1),
                           pixel_mean=np.zeros(3, np.float32), pixel_scale=np.float32(1))
    train, _ = jax.eval_shape(lambda i: st.init_member(i, None, model=model, tx=tx,
                                                       image_size=32), inputs)
    member = jax.tree.map(lambda s: np.zeros((), s.dtype), train)
    tree = placed.assemble([member] * args.members)
    times = []
    for _ in range(args.reps):
        t = time.perf_counter()
        placed.assemble(placed.split(tree))
        times.append(time.perf_counter() - t)
    print(f"leaves {len(jax.tree.leaves(member))}, members {args.members}: slice+assemble "
          f"{1e3 * statistics.median(times):.2f} ms per step (median of {args.reps})")


if __name__ == "__main__":
    main()

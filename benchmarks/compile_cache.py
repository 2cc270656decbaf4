r"""Compile time of one member's training step with a cold vs a warm persistent compilation cache.

Run it twice with the same cache directory; the first run compiles and fills the cache, the
second loads the executable from it (tracing and lowering still happen):

  python -m benchmarks.compile_cache --cache_dir=/tmp/cc --stage_sizes=1,1,1,1 --width=8
  python -m benchmarks.compile_cache --cache_dir=/tmp/cc --stage_sizes=1,1,1,1 --width=8

Prints `compile <seconds> s, cache hits <n>, misses <n>`. ResNet50 is --stage_sizes=3,4,6,3
--width=64.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from sourcematters_jax import compile_cache
from sourcematters_jax.train import state as st, step as step_lib
from sourcematters_jax.train.augment import AugmentConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache_dir", required=True, help="persistent compilation cache directory")
    parser.add_argument("--stage_sizes", default="1,1,1,1", help="ResNet blocks per stage, e.g. 3,4,6,3")
    parser.add_argument("--width", type=int, default=8, help="ResNet base width (64 = ResNet50)")
    parser.add_argument("--image_size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=4, help="training batch")
    args = parser.parse_args(argv)

    events: list[str] = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    compile_cache.enable(args.cache_dir, min_compile_secs=0)
    model = st.build_model({"stage_sizes": tuple(int(s) for s in args.stage_sizes.split(",")),
                            "width": args.width, "dtype": "float32"}, 0.5)
    tx = st.make_optimizer(1e-3, 0.9, 0.999, 1e-7)
    sds = jax.ShapeDtypeStruct
    inputs = st.MemberInit(seed=sds((), np.int32), source_slot=sds((), np.int32),
                           pixel_mean=sds((3,), np.float32), pixel_scale=sds((), np.float32))
    train, _ = jax.eval_shape(lambda i: st.init_member(i, None, model=model, tx=tx,
                                                       image_size=args.image_size), inputs)
    fn = step_lib.make_member_train_step(model, tx, AugmentConfig(), steps_per_epoch=1,
                                         batch_size=args.batch)
    ex = step_lib.Examples(indices=sds((args.batch,), np.int32),
                           confounded=sds((args.batch,), bool), mask=sds((args.batch,), bool))
    pool = step_lib.DevicePool(images=sds((2 * args.batch, 2, args.image_size, args.image_size),
                                          np.uint8), labels=sds((2 * args.batch,), np.int32))
    start = time.perf_counter()
    jax.jit(fn).lower(train, step_lib.MemberArrays(*(ex,) * 5), pool).compile()
    hits = sum(e.endswith("/cache_hits") for e in events)
    misses = sum(e.endswith("/cache_misses") for e in events)
    print(f"compile {time.perf_counter() - start:.1f} s, cache hits {hits}, misses {misses}")


if __name__ == "__main__":
    main()

"""Throughput and memory measurements of the training step (not run in CI).

`python -m benchmarks.member_throughput --help` is the entry point; it runs every measurement in
a child process (`jax_cell`, `keras_peer`, `matmul_peak`) so that each one has its own XLA device
layout, thread pools and peak-memory counter. See docs/performance.md for results.
"""

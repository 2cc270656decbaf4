"""Results report: summary tables, the study's figures, permutation tests, comparison with the paper.

Modules: load (read and validate results.csv tables), stats (bootstrap CI, permutation t-test),
summary, compare (source-vs-source tests), paper (shipped reported numbers), figures, document
(report.md), report (the `sourcematters report` CLI: `build_parser()`, `main(argv)`).
Importing this package does not import JAX.
"""

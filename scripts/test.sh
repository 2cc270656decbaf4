#!/usr/bin/env bash
# The README's test command: install the package with its test extras, then run the CPU test suite.
# tests/conftest.py gives JAX two host devices so the sharding tests have a mesh to shard over.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e '.[test]'
export TF_CPP_MIN_LOG_LEVEL=2
python3 -m pytest -q -n 2 tests "$@"

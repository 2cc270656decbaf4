#!/usr/bin/env bash
# The README's demo command: install the package, then run the synthetic chest X-ray study
# (configs/demo.py) end to end: data, training, report. Extra arguments go to `sourcematters demo`
# (e.g. --fresh, --root=DIR; --help lists them). Outputs land in workdirs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
echo "[demo] installing sourcematters-jax and its dependencies (pip install -e .) ..."
python3 -m pip install -q -e .
echo "[demo] installed in $((SECONDS - start)) s; running the demo (a few minutes on 2 CPU cores)"
export TF_CPP_MIN_LOG_LEVEL=2
python3 -m sourcematters_jax.demo "$@"
echo "[demo] total wall time $((SECONDS - start)) s"

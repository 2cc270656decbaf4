"""`python -m sourcematters_jax.launch ...` is `sourcematters sweep ...`."""

import sys

from sourcematters_jax.launch.sweep import main

sys.exit(main())

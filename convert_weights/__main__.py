"""`python -m sourcematters_jax.convert_weights --input FILE.h5 --output DIR`: see convert_weights/cli.py."""

import sys

from sourcematters_jax.convert_weights.cli import main

if __name__ == "__main__":
    sys.exit(main())

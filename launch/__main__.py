"""`python -m launch ...` is `sourcematters sweep ...`."""

import sys

from launch.sweep import main

sys.exit(main())

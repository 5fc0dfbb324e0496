"""`python -m slp_toolkit ...` (what `accelerate launch -m slp_toolkit train RECIPE` runs)."""

import sys

from slp_toolkit.cli import main

sys.exit(main())

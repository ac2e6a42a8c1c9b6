"""`python -m agent.cli`: the same entry point as the `ems-agent` script."""

import sys

from agent.cli import main

sys.exit(main())

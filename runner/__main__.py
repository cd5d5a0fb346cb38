"""`python -m runner` runs the CLI."""

import sys

from runner.cli import main

sys.exit(main())

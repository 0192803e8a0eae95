"""`python -m kloghub` is the `kloghub` command."""

import sys

from kloghub import cli

sys.exit(cli.main())

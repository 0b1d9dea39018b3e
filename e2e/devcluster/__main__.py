"""`python -m devcluster up|down|status|demo`: see cli.py."""

import sys

from devcluster.cli import main

sys.exit(main())

"""`python -m modeldeploy.cli ...`: the `modeldeploy` command without its console script."""

import sys

from modeldeploy.cli import main

sys.exit(main())

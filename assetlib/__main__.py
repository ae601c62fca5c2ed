"""`python -m assetlib`: the `assetlib` command."""

import sys

from assetlib.faces.cli import main

sys.exit(main())

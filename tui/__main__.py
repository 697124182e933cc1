"""`python -m tui` runs the `kube-llm` command line."""

import sys

from tui.cli.main import main

sys.exit(main())

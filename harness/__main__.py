"""`python -m harness` is the `harness` command."""

import sys

from harness.cli.main import main

if __name__ == "__main__":  # guarded: worker processes may import this module
    sys.exit(main())

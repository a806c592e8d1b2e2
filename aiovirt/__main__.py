"""``python -m aiovirt``: the aiovirsh command line."""

import sys

from aiovirt.cli import main

if __name__ == "__main__":
    sys.exit(main())

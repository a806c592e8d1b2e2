"""``python -m aiovirt.exporter``: serve Prometheus metrics for Xen nodes."""

import sys

from aiovirt.exporter import main

if __name__ == "__main__":
    sys.exit(main())

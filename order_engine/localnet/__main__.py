"""`python -m order_engine.localnet [command …]`: the same as `order-engine localnet`."""

from __future__ import annotations

import sys

from order_engine.localnet.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m order_engine.client …`: the client's commands without the server installed."""

import sys

from order_engine.client import main

sys.exit(main())

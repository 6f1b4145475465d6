"""`python -m order_engine.client submit …`: the client on a machine with nothing of the server."""

import sys

from order_engine.client import main

sys.exit(main())

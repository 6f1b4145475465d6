"""Test-only support code (never imported by the product). Fixtures live in the conftest.py
files; everything they and the tests use lives here:

- servers.py      which PostgreSQL and Redis a session uses (embedded or DATABASE_URL /
                  REDIS_URL), test databases made on them, private servers a test may break
- stack.py        the one launcher: API, worker(s), beat and localnet started with production's
                  command lines (order_engine.ops.cli), and `Stack`, which drives and reads them
- processes.py    child processes started and always stopped; free ports
- watchers.py     waiting with a deadline; WebSocket watchers following an order
- invariants.py   the money invariants over a whole stack (state machine: order_engine.models)
- clients.py      HTTP and WebSocket clients with the suite's API key, JSON-RPC, order bodies
- factories.py    orders, accounts and keys on the test's session (flush, never commit)
- brokers.py      the Celery broker of a session (Redis or RabbitMQ)
- cluster.py      hosts in network namespaces (`make test-cluster`, `make bench-cluster`)
- crashing_worker.py, sender_faults.py   the test worker app whose sender can crash or hang
- flood.py        a flooding client run as its own process
"""

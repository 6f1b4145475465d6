"""Test-only support code (never imported by the product). Fixtures live in the conftest.py
files; everything they and the tests use lives here:

- servers.py      which PostgreSQL and Redis a session uses (embedded or DATABASE_URL /
                  REDIS_URL), test databases made on them, private servers a test may break
- stack.py        `Stack`: API, worker(s), beat and localnet started by the launcher the
                  benchmark shares (order_engine.ops.launch), driven, faulted and read
- watchers.py     waiting with a deadline; WebSocket watchers following an order
- invariants.py   the money invariants over a whole stack (state machine: order_engine.models)
- clients.py      HTTP and WebSocket clients with the suite's API key, order bodies
- factories.py    orders, accounts and keys on the test's session (flush, never commit)
- brokers.py      the Celery broker of a session (Redis or RabbitMQ)
- cluster.py      hosts in network namespaces (`make test-cluster`, `make bench-cluster`)
- crashing_worker.py, sender_faults.py   the test worker app whose sender can crash or hang
- flood.py        a flooding client run as its own process
"""

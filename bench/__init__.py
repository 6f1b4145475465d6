"""`make bench`: what the engine costs and how fast it goes, on the stack `make run` starts
(embedded PostgreSQL/Redis unless DATABASE_URL / REDIS_URL are set), started by the launcher the
tests use (`order_engine.ops.launch`). `python -m bench` runs the phases (`phases`, `triggers`,
`positions`, `contested`) and writes the report (`report`, from `figures`). `stack` holds the
servers and processes, `web` and `worker` the product's apps with the bench's endpoint and task,
`monitor` the meters; the load generators (`loadgen`, `wsclient`) run in processes of their own.
"""

# The benchmark's own Celery task (bench/worker.py), sent by name from the baseline endpoint
# (bench/web.py) and the stack's readiness probe.
NOOP_TASK = "bench.noop"

"""`make bench`, `make bench-floors`: what the engine costs and how fast it goes, on the stack
`make run` starts (embedded PostgreSQL/Redis unless DATABASE_URL / REDIS_URL are set), started by
the launcher the tests use (`order_engine.ops.launch`). `python -m bench` runs the phases
(`phases`, `triggers`) and writes the report (`report`, from `figures`); `python -m bench.floors`
measures the machinery alone. `stack` holds the servers and processes, `web` and `worker` the
product's apps with the bench's endpoints and tasks, `monitor` the meters; the load generators
(`loadgen`, `wsclient`, `floors_load`) run in processes of their own (`loadgen.Child`).
"""

# The benchmark's own Celery tasks (bench/worker.py), sent by name from the baseline endpoint
# (bench/web.py) and the load generators.
NOOP_TASK = "bench.noop"
FLOOR_TASK = "bench.floor"

"""`make bench`, `make bench-floors`: what the engine costs and how fast it goes, measured on the
stack `make run` starts (embedded PostgreSQL/Redis unless DATABASE_URL / REDIS_URL are set).

- `python -m bench` (`__main__`, `phases`, `triggers`): intake beside a bare baseline, a bare
  Celery round trip, end to end at zero and default venue latency, WebSocket subscribers, the
  peer load, the trigger engine; `report` writes `result.json` and `report.md`.
- `python -m bench.floors`: what the machinery under the engine costs per operation alone.
- `stack`: the servers, the bench database and the engine's processes, started by the launcher
  the tests use (`order_engine.ops.launch`); `web` and `worker` are the product's WSGI and Celery
  apps with the bench's own endpoints and no-op tasks added.
- `monitor`, `counters`: CPU of each process group, PostgreSQL's and Redis's own counters.
- `loadgen`, `wsclient`, `peer`, `producer`, `floors_load`: load generators, each run in a
  process of its own (`procs`).

The benchmark uses its own database (`BENCH_DATABASE`, default `order_engine_bench`, recreated
each run) and Redis databases (`BENCH_REDIS_DBS`, default `12,13`) on those servers, so two runs
can share them; results go to `bench/results/<timestamp>/`.
"""

# The benchmark's own Celery tasks (bench/worker.py), sent by name from the baseline endpoint
# (bench/web.py) and the load generators.
NOOP_TASK = "bench.noop"
FLOOR_TASK = "bench.floor"

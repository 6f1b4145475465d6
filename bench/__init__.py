"""`make bench`: the performance harness of DESIGN §7.

It starts the stack the way `make run` does (embedded PostgreSQL/Redis unless DATABASE_URL /
REDIS_URL are set, migrations, gunicorn with BENCH_ENDPOINTS=1, a Celery worker), drives it
from separate load-generator processes, and writes `result.json` and `report.md` with PNG
plots under `bench/results/<timestamp>/`.

    python -m bench --quick            # about 3 minutes, for development
    python -m bench                    # the full run, about 15 minutes
    python -m bench --profile          # also py-spy profiles of the API and the worker
    python -m bench --preset peer      # issue 10's load (1,000 orders, 50 conns, a WebSocket each)
    python -m bench --soak-minutes 10  # add the worker-memory soak
    python -m bench.report <run dir>   # re-render a report from its result.json

The benchmark uses its own database (`order_engine_bench`, recreated each run) and Redis
databases 12 and 13 on those servers. Plots and profiles need the `bench` extra
(`pip install -e '.[bench]'`). `ORDER_ENGINE_STATE_DIR` puts the embedded servers elsewhere,
so a run never stops servers another session started under `.state/`.
"""

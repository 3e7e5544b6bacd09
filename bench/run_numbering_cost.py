"""What migration api/0007's trigger (a run's ``tape_ordinal``) costs a run's insert, measured alone.

    .venv/bin/python bench/run_numbering_cost.py [--blocks 6] [--runs 1000]

One embedded Postgres in a temporary folder with the project's migrations, one connection:
blocks of ``qr_create_run`` calls on fresh threads (each its own transaction, as the API makes
them), alternating with the trigger on and off (off: the trigger disabled and ``tape_ordinal``
defaulted to 0). Reports the median time a create took in each mode, round trip included, minus
this client's own CPU, so mostly Postgres' work; both modes share the machine's conditions. Prints
its figures; api.md's notes quote them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CREATE = "SELECT * FROM qr_create_run(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


def creates(conn, runs: int) -> float:
    """ms per create over ``runs`` creates, this process's CPU taken out."""
    from psycopg.types.json import Jsonb

    assistant = str(uuid.uuid4())
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(runs):
        conn.execute(CREATE, (str(uuid.uuid4()), str(uuid.uuid4()), assistant, "bench", Jsonb({}),
                              Jsonb({"input": {}, "graph_id": "bench"}), "enqueue", "bench-host", None, 0.0,
                              False, False, True, True))  # create the thread, as if_not_exists=create
        conn.commit()
    return ((time.perf_counter() - wall) - (time.process_time() - cpu)) / runs * 1000


def set_trigger(conn, on: bool) -> None:
    if on:
        conn.execute("ALTER TABLE qr_runs ENABLE TRIGGER qr_runs_number")
        conn.execute("ALTER TABLE qr_runs ALTER COLUMN tape_ordinal DROP DEFAULT")
    else:
        conn.execute("ALTER TABLE qr_runs ALTER COLUMN tape_ordinal SET DEFAULT 0")
        conn.execute("ALTER TABLE qr_runs DISABLE TRIGGER qr_runs_number")
    conn.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--runs", type=int, default=1000, help="creates per block")
    args = parser.parse_args()

    import psycopg

    from quadracode_ray.config import Settings
    from quadracode_ray.persistence.bootstrap import prepare_database
    from quadracode_ray.persistence.embedded import EmbeddedPostgres

    data = Path(tempfile.mkdtemp(prefix="qr-numbering-", dir="/tmp"))  # short: the socket lives in it
    postgres = EmbeddedPostgres(data / "postgres")
    try:
        url = postgres.start()
        prepare_database(Settings(_env_file=None, database_url=url, data_dir=data))
        timings: dict[str, list[float]] = {"trigger on": [], "trigger off": []}
        with psycopg.connect(url) as conn:
            creates(conn, args.runs)  # warm: plans cached, tables' first pages in memory
            for _ in range(args.blocks):
                for mode in timings:
                    set_trigger(conn, mode == "trigger on")
                    timings[mode].append(creates(conn, args.runs))
            set_trigger(conn, True)
        load = open("/proc/loadavg").read().split()[:3]
        for mode, values in timings.items():
            print(f"{mode}: {statistics.median(values):.3f} ms a create (median of {args.blocks} blocks of "
                  f"{args.runs}: {', '.join(f'{v:.3f}' for v in values)})")
        print(f"difference: {statistics.median(timings['trigger on']) - statistics.median(timings['trigger off']):+.3f} "
              f"ms a run; load average {' / '.join(load)}")
    finally:
        postgres.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Callback requests stored per second: the durable store as the callback node uses it.

Each request is the size a real one is (a hand-off context with variables, a
path and attempts) and is stored with synchronous=FULL, so every one is on
disk when `store()` returns, as the caller is told "we will call you back" only
then. Callers store at once in waves of `--concurrency` (1, 10, 100 by default);
each level runs `--count` requests in a fresh database in a temporary folder.

    .venv/bin/python bench/callbacks_store.py [--count 2000] [--concurrency 1,10,100] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sipbench import machine  # noqa: E402

from ivr.engine.services import CallbackRequest  # noqa: E402
from ivr.services.callbacks import SqliteCallbacks  # noqa: E402


def request(i: int) -> CallbackRequest:
    now = dt.datetime.now(dt.UTC)
    context = {"queue": "billing", "intent": "billing", "reason": "choice", "caller": f"+4416329{i:05d}",
               "variables": {"account": f"{i:08d}", "brand": "Acme Energy", "balance": 123.45},
               "path": ["welcome", "main_menu", "identify.ask_account", "billing_hold", "billing_callback"],
               "attempts": {"main_menu": {"no_input": 1}}, "skills": ["billing"], "priority": 5}
    return CallbackRequest(number=f"+4416329{i:05d}", queue="billing", due_by=now + dt.timedelta(hours=2),
                           context=context, call_id=f"bench-{i}", greeting="This is your callback from Acme.")


async def level(path: Path, count: int, concurrency: int) -> dict:
    store = SqliteCallbacks(path)
    latencies: list[float] = []
    try:
        async def one(i: int) -> None:
            t = time.perf_counter()
            await store.store(request(i))
            latencies.append(time.perf_counter() - t)

        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, count, concurrency):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + concurrency))))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        stored = len(await store.list(limit=count + 1))
    finally:
        store.close()
    latencies.sort()
    return {"concurrency": concurrency, "count": count, "stored": stored, "per_second": round(count / wall, 1),
            "cpu_ms_per_request": round(cpu / count * 1000, 3),
            "latency_ms_p50": round(statistics.median(latencies) * 1000, 2),
            "latency_ms_p99": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--concurrency", default="1,10,100")
    ap.add_argument("--out")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="ivr-bench-callbacks-") as tmp:
        for n in (int(x) for x in args.concurrency.split(",")):
            got = asyncio.run(level(Path(tmp) / f"c{n}.db", args.count, n))
            print(json.dumps(got), file=sys.stderr)
            results.append(got)
    out = {"machine": machine(), "results": results}
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

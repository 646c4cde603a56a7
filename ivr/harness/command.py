"""`ivr test`: run journeys against a SIP IVR, one after another or as load, and report."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import drivers
from . import journey as jm
from .drivers import DriverOptions, make_phone
from .line import CallerPhone, DriverCannot
from .results import JourneyResult
from .runner import run_journey


@dataclass
class Options:
    """What `ivr test` was told."""

    paths: list[str]
    target: str | None = None
    driver: str = "sip"  # a name in drivers.DRIVERS
    bind: str = "127.0.0.1"
    registrar: str | None = None  # for drivers that register (pyvoip): host:port
    events: str | None = None  # this engine's HTTP address, to follow its events
    api_token: str | None = None
    select: str | None = None  # run only journeys whose name or tags contain this
    load: int = 0  # calls in load mode (0: each journey once, in turn)
    rate: float = 1.0  # new calls a second in load mode
    concurrency: int = 0  # at most this many calls at once in load mode (0: no limit but the count)
    junit: str | None = None
    html: str | None = None
    json: str | None = None
    coverage: str | None = None  # a flows.yaml to measure coverage on
    quiet: bool = False


def load(opts: Options) -> list[jm.Journey]:
    journeys = jm.load_many([Path(p) for p in opts.paths])
    if opts.select:
        want = opts.select.lower()
        journeys = [j for j in journeys if want in j.name.lower() or any(want == t.lower() for t in j.tags)]
    return journeys


async def run(opts: Options, journeys: list[jm.Journey], out=sys.stdout) -> list[JourneyResult]:
    """Run the journeys (or the load) and return every result."""
    phone = make_phone(opts.driver, DriverOptions(bind=opts.bind, registrar=opts.registrar))
    await phone.start()
    events = None
    if opts.events:
        from .events import EngineEvents

        events = EngineEvents(opts.events, opts.api_token or os.environ.get("IVR_API_TOKEN", ""))
    try:
        if opts.load:
            return await _load(opts, journeys, phone, events)
        results = []
        for j in journeys:
            r = await run_journey(j, phone, opts.target, events=events)
            results.append(r)
            if not opts.quiet:
                print(_line(r), file=out, flush=True)
        return results
    finally:
        if events is not None:
            await events.close()
        await phone.close()


async def _load(opts: Options, journeys: list[jm.Journey], phone: CallerPhone, events) -> list[JourneyResult]:
    """`opts.load` calls started at `opts.rate` a second, journeys taken in turn."""
    limit = asyncio.Semaphore(opts.concurrency or opts.load)
    results: list[JourneyResult] = []
    bar = Progress(opts.load, enabled=not opts.quiet)
    order = itertools.cycle(journeys)

    async def one(j: jm.Journey) -> None:
        async with limit:
            r = await run_journey(j, phone, opts.target, events=events)
        results.append(r)
        bar.update(r.passed)

    tasks = []
    start = time.monotonic()
    for i in range(opts.load):
        # Paced from the start, not from the previous call: a slow call does not slow the rate.
        delay = start + i / opts.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(next(order))))
    await asyncio.gather(*tasks)
    bar.done()
    return results


class Progress:
    """Progress on standard error: a bar redrawn in place on a terminal, a line per tenth elsewhere."""

    def __init__(self, total: int, enabled: bool = True, width: int = 30) -> None:
        self.total, self.enabled, self.width = total, enabled, width
        self.tty = sys.stderr.isatty()
        self.passed = self.failed = 0
        self.t0 = time.monotonic()

    def update(self, passed: bool) -> None:
        if passed:
            self.passed += 1
        else:
            self.failed += 1
        n = self.passed + self.failed
        if not self.enabled or (not self.tty and n % max(1, self.total // 10) and n != self.total):
            return
        filled = self.width * n // self.total
        text = (f"[{'#' * filled}{'.' * (self.width - filled)}] {n}/{self.total} "
                f"pass {self.passed} fail {self.failed} {time.monotonic() - self.t0:.0f} s")
        sys.stderr.write(("\r" + text) if self.tty else text + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _line(r: JourneyResult) -> str:
    if r.passed:
        return f"PASS {r.name} ({r.duration_s:.1f} s)"
    step = r.failed_step
    if step is None:
        return f"FAIL {r.name}: {r.error}"
    return f"FAIL {r.name}: step {step.index + 1} {step.label} ({r.file}:{step.line}): {step.detail}"


def main(opts: Options) -> int:
    """Run `ivr test`; 0 when every journey passed, 1 when one failed, 2 for journeys that cannot run."""
    try:
        journeys = load(opts)
    except jm.JourneyError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if not journeys:
        print("ivr test: no journeys to run", file=sys.stderr)
        return 2
    try:
        drivers.check(opts.driver)
    except ValueError as exc:
        print(f"ivr test: {exc}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(run(opts, journeys))
    except DriverCannot as exc:  # the driver's own program or package is missing
        print(f"ivr test: {exc}", file=sys.stderr)
        return 2
    _report(opts, results)
    return 0 if results and all(r.passed for r in results) else 1


def _report(opts: Options, results: list[JourneyResult]) -> None:
    from . import report

    cov = None
    if opts.coverage:
        from ..flows import load_flow

        flow = load_flow(opts.coverage)
        cov = report.coverage(flow, results)
    if not opts.quiet:
        if opts.load:
            print(report.summary_text(results))
        elif len(results) > 1:
            print(report.summary_text(results).splitlines()[-1])
        if cov is not None:
            print(report.coverage_text(cov))
    report.write_reports(results, junit=opts.junit, html=opts.html, json_path=opts.json, coverage=cov)

"""The harness as a pytest plugin: run journeys from a test and assert on what they found.

    def test_escape(ivr_harness):
        [result] = ivr_harness.run("journeys/escape.yaml", target="sip:ivr@127.0.0.1:5060")
        assert result.passed, ivr_harness.explain(result)

The target (and, for this engine, its HTTP address and API token) can also be
given once on the command line: `pytest --ivr-target sip:ivr@host:5060
--ivr-events http://host:8080 --ivr-api-token T`, and the phone with `--ivr-driver`
(and `--ivr-registrar` for pyvoip). Installed with the package
(entry point `pytest11`); it adds nothing to a test run that does not use it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("ivr", "IVR journeys (ivr test)")
    group.addoption("--ivr-target", default=None, help="the SIP IVR journeys call (sip:user@host:port)")
    group.addoption("--ivr-events", default=None, help="the engine's HTTP address, to read its call events")
    group.addoption("--ivr-api-token", default=None, help="the engine's API token")
    group.addoption("--ivr-driver", default="sip", help="the caller's phone: sip, pyvoip or baresip")
    group.addoption("--ivr-registrar", default=None, help="pyvoip: the registrar its phones call through (host:port)")


class Harness:
    """Runs journey files (or folders) and returns their results."""

    def __init__(self, target: str | None = None, events: str | None = None, api_token: str | None = None,
                 driver: str = "sip", registrar: str | None = None) -> None:
        self.target = target
        self.events = events
        self.api_token = api_token
        self.driver = driver
        self.registrar = registrar

    def run(self, *paths: str | Path, target: str | None = None, events: str | None = None,
            api_token: str | None = None, load: int = 0, rate: float = 1.0, driver: str | None = None,
            registrar: str | None = None):
        """Run the journeys in `paths` one after another (or `load` calls at `rate` a second),
        with the `driver` phone (sip, pyvoip through `registrar`, baresip)."""
        from .command import Options, run
        from .command import load as load_journeys

        opts = Options(paths=[str(p) for p in paths], target=target or self.target,
                       events=events or self.events, api_token=api_token or self.api_token,
                       load=load, rate=rate, quiet=True, driver=driver or self.driver,
                       registrar=registrar or self.registrar)
        return asyncio.run(run(opts, load_journeys(opts)))

    @staticmethod
    def explain(result) -> str:
        """What a failed journey found, step by step (for an assertion message)."""
        from .report import summary_text

        lines = [summary_text([result])]
        for s in result.steps:
            lines.append(f"  {s.status:7} {s.label}: {s.detail}")
        return "\n".join(lines)


@pytest.fixture
def ivr_harness(request) -> Harness:
    """Runs caller journeys against a SIP IVR; see ivr/harness/pytest_plugin.py."""
    opt = request.config.getoption
    return Harness(opt("--ivr-target"), opt("--ivr-events"), opt("--ivr-api-token"), opt("--ivr-driver"),
                   opt("--ivr-registrar"))

"""Caller drivers by name: an unknown one is refused before any call, naming those there are."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.cli import main
from ivr.harness.drivers import DRIVERS, DriverOptions, make_phone

ROOT = Path(__file__).resolve().parents[3]


def test_an_unknown_driver_is_refused_naming_the_drivers(capsys) -> None:
    code = main(["test", str(ROOT / "journeys" / "escape.yaml"), "--target", "sip:ivr@127.0.0.1:9",
                 "--driver", "linphone"])
    assert code == 2
    assert "ivr test: no caller driver 'linphone'; there are: sip, pyvoip, baresip" in capsys.readouterr().err


def test_each_driver_makes_a_phone_of_that_name() -> None:
    for name in DRIVERS:
        assert make_phone(name, DriverOptions()).driver == name
    with pytest.raises(ValueError, match="no caller driver 'x'"):
        make_phone("x", DriverOptions())

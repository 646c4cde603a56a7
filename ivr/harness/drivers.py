"""The caller drivers `ivr test --driver` can place calls with, by name.

Every driver gives a phone with `start`, `call` and `close` (line.CallerPhone),
whose lines the same journey steps drive; they differ in what they can do
(a pyVoIP phone cannot send SIP INFO; baresip cannot add headers) and a step
a driver cannot do fails saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .line import CallerPhone


@dataclass
class DriverOptions:
    """What the drivers may need from the command line."""

    bind: str = "127.0.0.1"  # the local address calls are placed from
    registrar: str | None = None  # host:port a registering phone (pyvoip) signs in to


def _sip(opts: DriverOptions) -> CallerPhone:
    from .phone import Phone

    return Phone(host=opts.bind)


def _pyvoip(opts: DriverOptions) -> CallerPhone:
    from .pyvoip_phone import PyvoipPhone

    return PyvoipPhone(host=opts.bind, registrar=opts.registrar)


def _baresip(opts: DriverOptions) -> CallerPhone:
    from .baresip_phone import BaresipPhone

    return BaresipPhone(host=opts.bind)


DRIVERS: dict[str, Callable[[DriverOptions], CallerPhone]] = {
    "sip": _sip,  # the harness's own SIP client: every step, many calls on one port
    "pyvoip": _pyvoip,  # a pyVoIP phone that registers to a registrar and calls through it
    "baresip": _baresip,  # a baresip softphone process per call, driven over its control socket
}


def check(driver: str) -> None:
    """ValueError naming the drivers there are when `driver` is not one of them."""
    if driver not in DRIVERS:
        raise ValueError(f"no caller driver {driver!r}; there are: {', '.join(DRIVERS)}")


def make_phone(driver: str, opts: DriverOptions) -> CallerPhone:
    """The phone for `driver` (ValueError when there is no such driver)."""
    check(driver)
    return DRIVERS[driver](opts)

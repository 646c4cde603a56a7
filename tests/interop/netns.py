"""Run one test body inside its own network namespace, with only loopback up.

Tests that feed hostile SIP or SDP (messages naming foreign hosts, replies
routed by forged Via headers, RTP aimed at made-up addresses) must not be able
to send a single packet off this machine, whatever the server does with what
it is told. So the server and the sender both run in a namespace of their own:

    unshare -n sh -c 'ip link set lo up && exec python -m interop.netns MODULE:FUNCTION TMPDIR'

`isolated(...)` does that from a test and fails it with the body's traceback;
run as a program, this module calls `FUNCTION(Path(TMPDIR))` and exits 0 when
it returns, 1 with the traceback when it raises (or runs out of time).
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import traceback
from pathlib import Path

from .conftest import ROOT, need


def isolated(function: str, tmp: Path, timeout: float = 90.0) -> str:
    """Run `function` ("module:name") in a fresh loopback-only network namespace; its output."""
    unshare = need("unshare")
    need("ip")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]))
    cmd = [unshare, "-n", "sh", "-c", 'ip link set lo up && exec "$0" -m interop.netns "$@"',
           sys.executable, function, str(tmp), str(int(timeout - 15))]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"{function} failed in its namespace (exit {proc.returncode}):\n{output[-6000:]}")
    return output


def _out_of_time(signum, frame) -> None:
    raise TimeoutError("the test body ran out of time")


def _main(argv: list[str]) -> int:
    target, tmp, deadline = argv
    # Time out from inside, so the body's finally blocks stop the server it started; killed
    # from outside, the server would outlive it in a namespace nobody can reach.
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(max(int(deadline), 1))
    module, _, name = target.partition(":")
    interfaces = [n for _, n in socket.if_nameindex()]
    if interfaces != ["lo"]:  # never run a hostile body where packets could leave the machine
        print(f"refusing to run: interfaces {interfaces} (expected only lo)", file=sys.stderr)
        return 2
    try:
        getattr(importlib.import_module(module), name)(Path(tmp))
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

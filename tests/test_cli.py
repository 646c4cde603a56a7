"""The `ivr` command end to end: each subcommand run as a user would run it."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "flows.yaml"
_SCRIPT = Path(sys.executable).parent / "ivr"
IVR = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ivr.cli"]

BROKEN = """\
start: main
escape:
  to: agent
nodes:
  main:
    kind: menu
    promt: "Press 1."
    options:
      - key: 1
        goto: billng
  agent:
    kind: handoff
    queue: general
    on_failure: agent
"""


def ivr(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*IVR, *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_validate_default_flow_passes() -> None:
    proc = ivr("validate", str(FLOWS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stderr


def test_validate_reports_path_line_col_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "flows.yaml"
    bad.write_text(BROKEN)
    proc = ivr("validate", str(bad))
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines and all(re.match(rf"^{re.escape(str(bad))}:\d+:\d+: (error|warning): ", ln) for ln in lines), lines
    assert any(":7:5: error: unknown key 'promt'" in ln and "did you mean 'prompt'" in ln for ln in lines), lines
    assert any(":10:15: error:" in ln and "'billng'" in ln for ln in lines), lines


def test_validate_json_and_strict(tmp_path: Path) -> None:
    bad = tmp_path / "flows.yaml"
    bad.write_text(BROKEN)
    items = json.loads(ivr("validate", str(bad), "--json").stdout)
    assert {"path", "line", "col", "severity", "code", "message", "hint"} <= set(items[0])
    assert {i["code"] for i in items} >= {"unknown-key", "missing-target"}
    # A flow with only a warning passes, unless --strict.
    warn = tmp_path / "warn.yaml"
    warn.write_text(BROKEN.replace("promt", "prompt").replace("billng", "agent")
                    .replace("    on_failure: agent\n", ""))
    assert ivr("validate", str(warn)).returncode == 0
    strict = ivr("validate", str(warn), "--strict")
    assert strict.returncode == 1 and "no-failure-path" in strict.stdout


def test_validate_missing_file() -> None:
    proc = ivr("validate", "no/such/flows.yaml")
    assert proc.returncode == 1 and "no such file" in proc.stdout


def test_schema_writes_the_committed_schema(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    assert ivr("schema", "-o", str(out)).returncode == 0
    assert json.loads(out.read_text()) == json.loads((ROOT / "flows.schema.json").read_text())
    handoff = json.loads(ivr("schema", "--handoff").stdout)
    assert handoff["properties"]["reason"]["enum"] == ["choice", "escape", "failures", "overflow"]


@pytest.mark.parametrize("suffix", [".mmd", ".dot", ".svg"])
def test_graph_writes_each_format(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"flow{suffix}"
    proc = ivr("graph", str(FLOWS), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "billing_agent" in text and "escape" in text
    if suffix == ".svg":
        assert text.lstrip().startswith(("<svg", "<?xml"))


def test_graph_unknown_format_and_invalid_flow(tmp_path: Path) -> None:
    assert ivr("graph", str(FLOWS), "-o", str(tmp_path / "x.png")).returncode == 2
    bad = tmp_path / "flows.yaml"
    bad.write_text(BROKEN)
    proc = ivr("graph", str(bad), "-o", str(tmp_path / "x.svg"))
    assert proc.returncode == 1 and "unknown key" in proc.stderr


def test_piped_zero_ends_in_handoff_with_reason_escape() -> None:
    # Exactly the check, at whatever time the test runs (day or night paths).
    proc = ivr("simulate", str(FLOWS), "--json", stdin="0\n")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["outcome"] == "handoff"
    assert doc["handoff"]["reason"] == "escape"
    assert {"outcome", "path", "prompts", "handoff"} <= set(doc)
    assert doc["path"][0] == "check_hours" and doc["prompts"]


def test_simulate_script_expect_failure_exits_1(tmp_path: Path) -> None:
    script = tmp_path / "s.txt"
    script.write_text("expect node billing_menu\n1\n")
    proc = ivr("simulate", str(FLOWS), "--script", str(script), "--at", "2026-11-24T10:00 Europe/London")
    assert proc.returncode == 1
    assert "script line 1: expected the IVR at 'billing_menu', it is at 'main_menu'" in proc.stderr


def test_simulate_bad_script_line_exits_2(tmp_path: Path) -> None:
    script = tmp_path / "s.txt"
    script.write_text("wait soon\n")
    proc = ivr("simulate", str(FLOWS), "--script", str(script))
    assert proc.returncode == 2 and "line 1: wait needs seconds" in proc.stderr


def test_simulate_refuses_an_invalid_flow(tmp_path: Path) -> None:
    bad = tmp_path / "flows.yaml"
    bad.write_text(BROKEN)
    proc = ivr("simulate", str(bad), stdin="0\n")
    assert proc.returncode == 1 and "error(s)" in proc.stderr


def _read_until(fd: int, pattern: str, timeout: float = 30.0) -> str:
    buf = ""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096).decode(errors="replace")
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if re.search(pattern, buf):
                return buf
    raise AssertionError(f"did not see {pattern!r} in:\n{buf}")


def test_interactive_simulation_on_a_terminal() -> None:
    """A designer types at the prompt: the IVR waits for them at each menu."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the ivr command on a terminal
        os.chdir(ROOT)
        os.execv(IVR[0], [*IVR, "simulate", str(FLOWS), "--at", "2026-11-24T10:00 Europe/London"])
    try:
        out = _read_until(fd, r"you \(main_menu\)> ")
        assert "For billing and payments" in out
        os.write(fd, b"say billing\n")
        out = _read_until(fd, r"you \(identify\.ask_account\)> ")
        assert "heard speech 'billing' => option" in out
        os.write(fd, b"0\n")
        out = _read_until(fd, r"call ended: handoff")
        assert "reason escape" in out
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)

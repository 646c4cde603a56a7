"""Scripted journeys through the default flows.yaml, run end to end with `ivr simulate`.

Each tests/journeys/*.script starts with comment lines that state what must
happen: `# at:` when the call takes place, `# args:` extra options, `# outcome:`,
dotted keys into the journey record (`# handoff.queue: billing`), and `# path:`
node ids that must be visited in that order.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "tests" / "journeys").glob("*.script"))


def _header(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            continue
        key, sep, val = line[1:].strip().partition(":")
        if sep and " " not in key.strip():
            out[key.strip()] = val.strip()
    return out


def _dig(doc, dotted: str):
    cur = doc
    for part in dotted.split("."):
        assert isinstance(cur, dict) and part in cur, f"journey has no {dotted!r}"
        cur = cur[part]
    return cur


def _is_subsequence(wanted: list[str], path: list[str]) -> bool:
    it = iter(path)
    return all(any(p == w for p in it) for w in wanted)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_journey(script: Path) -> None:
    head = _header(script)
    cmd = [sys.executable, "-m", "ivr.cli", "simulate", str(ROOT / "flows.yaml"), "--script", str(script),
           "--json", "--at", head["at"], *shlex.split(head.get("args", ""))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    transcript = proc.stderr
    assert doc["outcome"] == head["outcome"], transcript
    for key, want in head.items():
        if key in ("at", "args", "outcome"):
            continue
        if key == "path":
            assert _is_subsequence(want.split(), doc["path"]), f"path {doc['path']}\n{transcript}"
            continue
        got = _dig(doc, key)
        if isinstance(got, list):
            got = ",".join(map(str, got))
        assert str(got) == want, f"{key}: {got!r} != {want!r}\n{transcript}"
    # Every journey, whatever its end, records where it went and what was said.
    assert doc["path"][0] == "check_hours"
    assert doc["prompts"], "no prompt recorded"
    assert doc["ended_at"] and doc["duration_s"] > 0

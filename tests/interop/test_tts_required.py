"""`ivr serve` refuses a flow whose text prompts cannot be spoken (no TTS installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, free_port


def test_serve_without_tts_names_each_text_prompt(tmp_path: Path) -> None:
    # An empty PATH: espeak-ng cannot be found. The interpreter is named by its own path
    # (a link to it elsewhere would not find its virtual environment).
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {"PATH": str(bindir), "HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "ivr.cli", "serve", str(ROOT / "tests/interop/flows/menu.yaml"),
           "--sip", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}", "--data", str(tmp_path / "d")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if "[no-tts]" in ln]
    assert lines, proc.stdout + proc.stderr
    # menu.yaml's two text prompts, named where they are written ...
    assert any("menu.yaml:10:13: error: main_menu: prompt has only text" in ln for ln in lines), proc.stdout
    assert any("menu.yaml:28:13: error: goodbye: prompt has only text" in ln for ln in lines), proc.stdout
    # ... and the built-in retry and escape prompts the flow relies on: the escape's at its
    # escape: block, the defaults' (not written in this flow) at the start of the flow.
    assert any("menu.yaml:6:3: error: the built-in escape prompt" in ln for ln in lines), proc.stdout
    assert sum("menu.yaml:2:1: error: the built-in defaults prompt" in ln for ln in lines) == 2, proc.stdout
    assert "not starting" in proc.stdout

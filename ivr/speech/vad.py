"""A small energy-based voice activity detector for 20 ms PCM16 frames.

The level of each frame is compared with an adaptive noise floor, so a quiet
line and a hissy mobile both work without tuning. Speech starts after a short
run of voiced frames (so clicks and single pops do not barge in) and ends after
a configurable run of unvoiced ones. The no-speech timeout is the caller's job:
the detector only says what it hears.
"""

from __future__ import annotations

import enum

import numpy as np


class VadEvent(enum.Enum):
    """A change of state reported by `EnergyVad.push`."""

    START = "start"
    END = "end"


class EnergyVad:
    """Voice activity from frame energy against an adaptive noise floor."""

    def __init__(self, sample_rate: int = 8000, frame_ms: int = 20, start_ms: int = 100,
                 end_ms: int = 600, margin_db: float = 10.0, min_speech_dbfs: float = -45.0,
                 initial_floor_dbfs: float = -60.0) -> None:
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.start_frames = max(1, round(start_ms / frame_ms))
        self.end_frames = max(1, round(end_ms / frame_ms))
        self.margin_db = margin_db
        # An absolute floor for "voiced": on a line of pure digital silence the
        # adaptive floor sinks very low, and the faintest hiss would count as speech.
        self.min_speech_dbfs = min_speech_dbfs
        self.floor_dbfs = initial_floor_dbfs
        self.in_speech = False
        self.last_voiced = False  # whether the latest frame counted as voice
        self._voiced_run = 0
        self._silent_run = 0

    @staticmethod
    def level_dbfs(frame: bytes) -> float:
        """RMS level of a PCM16 frame in dB relative to full scale."""
        x = np.frombuffer(frame[: len(frame) // 2 * 2], dtype="<i2").astype(np.float64)
        if x.size == 0:
            return -120.0
        rms = float(np.sqrt(np.mean(x * x)))
        return 20.0 * np.log10(max(rms, 1e-3) / 32768.0)

    def _adapt(self, level: float) -> None:
        # Fall quickly and rise slowly: a pause reveals the true floor at once, while
        # a long vowel does not drag the floor up and end the utterance early.
        rate = 0.3 if level < self.floor_dbfs else 0.02
        self.floor_dbfs += rate * (level - self.floor_dbfs)

    def push(self, frame: bytes) -> VadEvent | None:
        """Feed one frame; returns START or END when the state changes, else None."""
        level = self.level_dbfs(frame)
        voiced = level > max(self.floor_dbfs + self.margin_db, self.min_speech_dbfs)
        self.last_voiced = voiced
        if not self.in_speech:
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            if not voiced:
                self._adapt(level)
            if self._voiced_run >= self.start_frames:
                self.in_speech = True
                self._silent_run = 0
                return VadEvent.START
            return None
        if voiced:
            self._silent_run = 0
            return None
        self._silent_run += 1
        self._adapt(level)
        if self._silent_run >= self.end_frames:
            self.in_speech = False
            self._voiced_run = 0
            return VadEvent.END
        return None

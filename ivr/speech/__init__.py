"""Speech recognition for listening turns: voice activity detection and the
offline recognisers that implement the engine's `Recognizer` interface."""

from .vad import EnergyVad, VadEvent

__all__ = ["EnergyVad", "VadEvent"]

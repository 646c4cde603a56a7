"""Audio: frames, codecs, prompts and TTS, the media clock, DTMF tone detection."""

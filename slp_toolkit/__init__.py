"""slp_toolkit: fine-tune pretrained speech models (ASR, TTS, speech emotion) from one recipe format."""

__version__ = "0.1.0"

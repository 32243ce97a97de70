"""The audio-language model: Whisper encoder -> projector -> causal LLM."""

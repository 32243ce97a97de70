"""The synthetic multitask corpus, made offline with TTS and synthesized sound events."""

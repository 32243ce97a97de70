"""Conversions between qaudio models and other formats.

=======================  ====================================================================
``ctranslate2.py``       CTranslate2's ``model.bin`` and the files beside it, read with NumPy
``whisper_packages.py``  Whisper weights inside installed pip packages (a split model joined)
``whisper_config.py``    Whisper's config, generation settings and tokenizer, from the model
``whisper.py``           the tensor map to ``WhisperForConditionalGeneration``; the import
``whisper_cache.py``     any Whisper source as what ``from_pretrained`` reads (imported once)
``import_whisper.py``    ``qaudio import-whisper SRC OUT``
``qwen2_audio.py``       transformers ``Qwen2AudioForConditionalGeneration``, both ways
``import_model.py``      ``qaudio import-model``
``export.py``            ``qaudio export``
=======================  ====================================================================

Weight files and key renaming are shared with the model's own checkpoints in
:mod:`qaudio.model.weights`.
"""

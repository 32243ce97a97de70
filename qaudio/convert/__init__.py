"""Conversions between qaudio models and released audio-language models' formats.

:mod:`qaudio.convert.qwen2_audio`: transformers ``Qwen2AudioForConditionalGeneration``, both ways.
"""

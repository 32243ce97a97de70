"""The built-in evaluation suites, registered in one place. A user's suite is one file with a
``SUITE`` object (a :class:`qaudio.suite.Suite`), passed by path: ``qaudio eval --suite my_suite.py``."""

from . import qwen2_audio, qwen_audio, synthetic

SUITES = {m.SUITE.name: m.SUITE for m in (synthetic, qwen_audio, qwen2_audio)}

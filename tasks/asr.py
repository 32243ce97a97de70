"""Automatic speech recognition: the transcript, without inverse text normalisation."""

from qaudio.tags import TagPath
from qaudio.task import Task

from . import srwt

TASK = Task(
    name="asr",
    tag_path=TagPath("transcript", "transcribe", "wo_itn"),
    metric="wer",
    profile="qwen2_audio",
    timestamped_variant=srwt.TASK,
    transcribes_speech=True,
    chunks_at_words=True,
    max_new_tokens=256,  # a 30-s window holds about 90 spoken words
    description="speech recognition (word error rate; character error rate for Chinese)",
)

"""Automatic speech recognition: the transcript, without inverse text normalisation."""
from qaudio.tags import TagPath
from qaudio.task import Task

TASK = Task(
    name="asr",
    tag_path=TagPath("transcript", "transcribe", "wo_itn"),
    chunk_at_words=True,  # a transcript splits at word boundaries
    metric="wer",
    profile="qwen2_audio",
    description="speech recognition (word error rate; character error rate for Chinese)",
)

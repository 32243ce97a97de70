"""Speech recognition with word timestamps: <|start|>word<|end|> for every word."""

from qaudio.tags import TagPath
from qaudio.task import TimestampTask

TASK = TimestampTask(
    name="srwt",
    tag_path=TagPath("transcript", "transcribe", "wo_itn"),
    metric="timestamps",
    profile="qwen_audio",
    transcribes_speech=True,
    chunks_at_words=True,
    max_new_tokens=512,  # about 90 words in a 30-s window, each with two time tokens
    description="speech recognition with word timestamps (AAS in ms, boundary errors)",
)

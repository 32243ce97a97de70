"""Speech recognition with word timestamps: <|start|>word<|end|> for every word."""
from qaudio.tags import TagPath
from qaudio.task import TimestampTask

TASK = TimestampTask(
    name="srwt",
    tag_path=TagPath("transcript", "transcribe", "wo_itn"),
    chunk_at_words=True,  # a transcript splits at word boundaries
    metric="timestamps",
    profile="qwen_audio",
    description="speech recognition with word timestamps (AAS in ms, boundary errors)",
)

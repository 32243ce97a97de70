"""Audio question answering: <|question|>{question}<|answer|>, then a free-form answer."""

from qaudio.tags import TagPath
from qaudio.task import Task

TASK = Task(
    name="aqa",
    tag_path=TagPath("analysis", "question"),
    metric="aqa",
    profile="qwen_audio",
    description="audio question answering (accuracy, and yes/no accuracy as Qwen-Audio's evaluate_aqa)",
)

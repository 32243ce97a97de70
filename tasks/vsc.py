"""Vocal sound classification, on VocalSound's six classes."""

from qaudio.tags import TagPath
from qaudio.task import ClassificationTask

TASK = ClassificationTask(
    name="vsc",
    tag_path=TagPath("analysis", "keyword", "vocal_classification"),
    metric="accuracy",
    profile="qwen2_audio",
    aliases=("vocal",),
    description="vocal sound classification (accuracy)",
    labels=("laughter", "sigh", "cough", "throatclearing", "sneeze", "sniff"),
)

"""Automated audio captioning, Clotho style (AudioCaps corpora set meta.instruction)."""

from qaudio.tags import TagPath
from qaudio.task import Task

TASK = Task(
    name="aac",
    tag_path=TagPath("analysis", "caption", "caption_clotho"),
    metric="caption",
    speech=False,
    profile="qwen_audio",
    description="audio captioning (CIDEr-D, METEOR, ROUGE-L, BLEU; SPICE/SPIDEr when available)",
)

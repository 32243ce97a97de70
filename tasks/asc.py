"""Acoustic scene classification, on CochlScene's 13 classes (lower-cased)."""

from qaudio.tags import TagPath
from qaudio.task import ClassificationTask

TASK = ClassificationTask(
    name="asc",
    tag_path=TagPath("analysis", "keyword", "scene"),
    metric="accuracy",
    profile="qwen_audio",
    speech=False,
    aliases=("scene",),
    description="acoustic scene classification (accuracy)",
    labels=(
        "bus",
        "cafe",
        "car",
        "crowdedindoor",
        "elevator",
        "kitchen",
        "park",
        "residentialarea",
        "restaurant",
        "restroom",
        "street",
        "subway",
        "subwaystation",
    ),
)

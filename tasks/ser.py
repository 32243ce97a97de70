"""Speech emotion recognition. Corpora map their own names onto this label set
(MELD: joy -> happy, sadness -> sad, anger -> angry)."""

from qaudio.tags import TagPath
from qaudio.task import ClassificationTask

TASK = ClassificationTask(
    name="ser",
    tag_path=TagPath("analysis", "keyword", "emotion_recognition"),
    metric="accuracy",
    profile="qwen2_audio",
    aliases=("emotion",),
    description="speech emotion recognition (accuracy)",
    labels=("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust"),
    label_aliases={"joy": "happy", "sadness": "sad", "anger": "angry"},  # MELD's names
)

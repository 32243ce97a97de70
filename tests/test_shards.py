"""Shard sets (qaudio.shards): `qaudio data --shards` writes WebDataset tars and an index that
say what they hold; the audio and the record come back; the hf recipe keeps embedded bytes."""

import json
import tarfile

import numpy as np
import pytest
import soundfile as sf

from qaudio.audio import SAMPLE_RATE, load_audio
from qaudio.cli import main as cli_main
from qaudio.data import Example
from qaudio.shards import AudioRecord, encode_audio, parse_size, read_index, read_shard, write_shards


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_parse_size_units_and_errors():
    assert parse_size("1GB") == 10**9 and parse_size("2MiB") == 2 * 2**20 and parse_size("512") == 512
    with pytest.raises(ValueError, match="500MB"):
        parse_size("lots")


def test_data_command_writes_shards_whose_index_and_audio_round_trip(tmp_path):
    clips = []
    for i in range(12):
        x = tone(0.5 + 0.1 * i, 220 + 40 * i)
        sf.write(tmp_path / f"c{i}.wav", x, SAMPLE_RATE, subtype="PCM_16")
        clips.append(
            Example(
                id=f"c{i}", audio=f"c{i}.wav", duration=len(x) / SAMPLE_RATE, task="asr", target=f"word {i}"
            ).to_json()
        )
    (tmp_path / "train.jsonl").write_text("\n".join(clips) + "\n")
    out = tmp_path / "shards"
    # ~16 kB per shard: a 0.5-1.6 s FLAC tone is a few kB, so several shards
    assert (
        cli_main(
            ["data", "manifest", "--root", str(tmp_path / "train.jsonl"), "--shards", str(out), "--shard-size", "16KB"]
        )
        == 0
    )
    index = read_index(str(out))
    assert len(index.shards) > 1
    assert index.examples == 12 and index.tasks == {"asr": 12}
    assert index.seconds == pytest.approx(sum(0.5 + 0.1 * i for i in range(12)), abs=1e-3)
    on_disk = json.loads((out / "index.json").read_text())
    assert on_disk["format"] == "webdataset" and on_disk["examples"] == 12
    for info in index.shards:
        assert (out / info.name).stat().st_size == info.bytes
        with tarfile.open(out / info.name) as tar:  # plain tar: readable without any library
            names = tar.getnames()
        assert len(names) == 2 * info.examples and all(n.endswith((".flac", ".json")) for n in names)
    back = [s for k in range(len(index.shards)) for s in read_shard(index, k)]
    assert [s.example.id for s in back] == [f"c{i}" for i in range(12)]
    for i, s in enumerate(back):
        decoded = load_audio(s.audio).samples
        expected = tone(0.5 + 0.1 * i, 220 + 40 * i)
        assert len(decoded) == len(expected)
        assert np.abs(decoded - expected).max() < 1e-3  # 16-bit FLAC: lossless up to quantisation
        assert s.example.target == f"word {i}" and s.example.audio.endswith(".flac")
    # Reading from an offset skips exactly the examples before it.
    assert [s.offset for s in read_shard(index, 0, skip=1)] == list(range(1, index.shards[0].examples))
    with pytest.raises(ValueError, match="already holds a shard set"):
        write_shards([AudioRecord(Example(id="x", audio="x", duration=1.0, task="asr"), b"", "flac")], out, 10**6)


def test_hf_recipe_writes_embedded_bytes_as_they_are_without_a_wav_cache(tmp_path):
    datasets = pytest.importorskip("datasets")
    flac = encode_audio(tone(0.8, 330), "flac")
    table = datasets.Dataset.from_dict(
        {
            "audio": [{"bytes": flac, "path": "a.flac"}, {"bytes": b"junk", "path": "b.flac"}],
            "text": ["hello", "broken"],
        }
    )
    table.to_parquet(str(tmp_path / "train.parquet"))
    cache = tmp_path / "cache"
    out = tmp_path / "shards"
    assert (
        cli_main(
            [
                "data",
                "hf",
                "--root",
                str(tmp_path / "train.parquet"),
                "--split",
                "train",
                "--shards",
                str(out),
                "--option",
                f"cache_dir={cache}",
            ]
        )
        == 0
    )
    assert not cache.exists()  # no wav copy of the corpus
    index = read_index(str(out))
    assert index.examples == 1  # the undecodable row was skipped (and counted in a warning)
    (sample,) = list(read_shard(index, 0))
    assert sample.audio == flac  # the parquet row's own bytes
    assert sample.example.duration == pytest.approx(0.8, abs=1e-3) and sample.example.target == "hello"


def test_encoder_cache_size_per_hour_follows_frame_rate_width_and_dtype():
    from qaudio.config import PRESETS, with_overrides
    from qaudio.training.cache_size import cache_bytes_per_hour

    large = PRESETS["whisper-large-v3-qwen2.5-1.5b"]
    assert cache_bytes_per_hour(large) == 3600 * 50 * 1280 * 2  # 50 Whisper frames per second, fp16
    assert cache_bytes_per_hour(large, "fp32") == 2 * cache_bytes_per_hour(large)
    pooled = with_overrides(large, encoder={"kind": "qwen2-audio"})  # 2x average pooling after the encoder
    assert cache_bytes_per_hour(pooled) == cache_bytes_per_hour(large) // 2


def test_a_shard_set_streams_over_http(tmp_path):
    import functools
    import http.server
    import shutil
    import threading

    if shutil.which("curl") is None:
        pytest.skip("webdataset reads http(s) URLs through curl, which is not installed")
    records = [
        AudioRecord(
            Example(id=f"h{i}", audio="x.flac", duration=0.5, task="asr", target=f"w{i}"),
            encode_audio(tone(0.5, 300 + i), "flac"),
            "flac",
        )
        for i in range(5)
    ]
    write_shards(records, tmp_path / "set", shard_size=10**6)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = read_index(f"http://127.0.0.1:{server.server_address[1]}/set/index.json")
        assert index.examples == 5
        assert [s.example.id for s in read_shard(index, 0)] == [f"h{i}" for i in range(5)]
    finally:
        server.shutdown()


def test_the_loader_goal_is_computed_from_the_preset():
    from benchmarks.data_scale import GPU_PEAK_TFLOPS, MFU, flops_per_example, gpu_appetite

    f = flops_per_example("whisper-large-v3-qwen2.5-1.5b", seconds=10.0)
    assert f["encoder_frames"] == 500  # 50 Whisper frames per second
    assert f["encoder"] == 2 * f["encoder_params"] * 500 + 32 * 4 * 500**2 * 1280  # 32 layers, width 1280
    assert 600e6 < f["encoder_params"] < 700e6 and 1.2e9 < f["llm_body_params"] < 1.4e9  # large-v3, Qwen2.5-1.5B body
    assert f["total"] == f["encoder"] + f["projector"] + f["llm"]
    rate, text = gpu_appetite("whisper-large-v3-qwen2.5-1.5b", 10.0)
    assert rate == pytest.approx(GPU_PEAK_TFLOPS * 1e12 * MFU / f["total"])
    assert f"{rate:.0f} examples/s" in text


def test_data_command_writes_the_dev_split_beside_the_shards_and_lists_it(tmp_path, capsys):
    for split, n in (("train", 6), ("dev", 3)):
        lines = []
        for i in range(n):
            sf.write(tmp_path / f"{split}{i}.wav", tone(0.4, 300 + 50 * i), SAMPLE_RATE, subtype="PCM_16")
            lines.append(
                Example(id=f"{split}{i}", audio=f"{split}{i}.wav", duration=0.4, task="asr", target=f"w {i}").to_json()
            )
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "shards"
    args = ["data", "manifest", "--root", str(tmp_path), "--split", "train", "--shards", str(out), "--dev-split", "dev"]
    assert cli_main(args) == 0
    assert "dev split dev: 3 examples" in capsys.readouterr().err
    on_disk = json.loads((out / "index.json").read_text())
    assert on_disk["examples"] == 6 and on_disk["splits"]["dev"]["examples"] == 3
    assert [s["name"] for s in on_disk["splits"]["dev"]["shards"]] == ["dev-000000.tar"]
    index = read_index(str(out))
    assert index.examples == 6 and index.dev is not None and index.dev.tasks == {"asr": 3}
    assert [s.example.id for s in read_shard(index.dev, 0)] == ["dev0", "dev1", "dev2"]
    # A recipe without fixed splits writes no dev split unless one is named, and says so.
    assert (
        cli_main(["data", "manifest", "--root", str(tmp_path), "--split", "train", "--shards", str(tmp_path / "o")])
        == 0
    )
    assert "no dev split written" in capsys.readouterr().err
    assert read_index(str(tmp_path / "o")).dev is None


def test_the_dev_split_written_by_default_is_the_recipes_own():
    from qaudio.recipe import shard_dev_split
    from qaudio.specs import get_recipe

    assert shard_dev_split(get_recipe("librispeech"), "train-clean-100", "auto") == "dev-clean"
    assert shard_dev_split(get_recipe("clotho"), "development", "auto") == "validation"  # development trains
    assert shard_dev_split(get_recipe("synthetic"), "train", "auto") == "dev"
    assert shard_dev_split(get_recipe("synthetic"), "dev", "auto") is None  # writing dev itself: no second copy
    assert shard_dev_split(get_recipe("hf"), "train", "auto") is None
    assert shard_dev_split(get_recipe("synthetic"), "train", "none") is None
    with pytest.raises(ValueError, match="is the split being written"):
        shard_dev_split(get_recipe("synthetic"), "train", "train")


def test_an_index_of_version_1_still_reads_without_a_dev_split(tmp_path):
    records = [
        AudioRecord(
            Example(id="a", audio="a.flac", duration=0.5, task="asr", target="w"),
            encode_audio(tone(0.5, 300), "flac"),
            "flac",
        )
    ]
    write_shards(records, tmp_path / "set", 10**6)
    data = json.loads((tmp_path / "set" / "index.json").read_text())
    assert "splits" not in data  # written without a dev split
    data["version"] = 1
    (tmp_path / "set" / "index.json").write_text(json.dumps(data))
    index = read_index(str(tmp_path / "set"))
    assert index.examples == 1 and index.dev is None


def test_the_cache_size_table_in_the_docs_is_the_computed_one():
    from pathlib import Path

    from qaudio.training.cache_size import table

    docs = (Path(__file__).resolve().parent.parent / "docs" / "shards.md").read_text(encoding="utf-8")
    assert table() in docs  # regenerate with `python -m qaudio.training.cache_size` when a preset changes

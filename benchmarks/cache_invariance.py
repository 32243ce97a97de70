"""Whether a clip's cached encoder output depends on the clips it was encoded with.

    python -m benchmarks.cache_invariance [--preset demo] [--clips 48] [--threads 2] [--json FILE]

Encoder outputs move by about 1e-5 with the shape of the batch (the kernels block their sums by
the padded length and the row count), and training amplifies that into different models. This
script encodes the same seeded speech-shaped clips (1-5 s, ``benchmarks.clips``) in several
groupings and counts the clips whose fp32 outputs are not bit-equal to the first grouping's:

- padded to the longest clip of each duration-sorted batch (``encode_clips`` without a shape,
  how the cache was filled until it took one shape per clip), batches of 16 against 8 and 1;
- through :func:`qaudio.training.feature_cache.fill_cache` (one batch shape per clip), all clips
  at once against every other clip, the clips between, and one clip per fill.

``--preset demo`` (the default) runs the real Whisper tiny.en encoder from its PyPI package;
``tiny`` a small random one (the test's). The counts, not times, are the result.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import torch

from benchmarks import common
from benchmarks.clips import MIXES, Clip, make_clips
from qaudio.config import PRESETS


def _sorted_batches(model, clips: list[Clip], size: int) -> dict[str, torch.Tensor]:
    from qaudio.training.feature_cache import encode_clips

    ordered = sorted(clips, key=lambda c: c.duration)
    out = {}
    for start in range(0, len(ordered), size):
        batch = ordered[start : start + size]
        states = encode_clips(model.processor, model, [c.samples for c in batch])
        out.update({c.key: s for c, s in zip(batch, states, strict=True)})
    return out


def _fills(model, groups: list[list[Clip]]) -> dict[str, torch.Tensor]:
    """Each group through fill_cache into its own empty fp32 cache."""
    from qaudio.training.feature_cache import FeatureCache, encoder_identity, fill_cache

    identity = encoder_identity(model, model.processor, "fp32")
    out = {}
    for group in groups:
        with tempfile.TemporaryDirectory() as root:
            cache = FeatureCache(root, identity, "fp32")
            fill_cache(cache, model.processor, model, {c.key: c for c in group}, "bench", load=lambda c: c.samples)
            out.update({c.key: cache.get(c.key).clone() for c in group})
    return out


def _differ(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> dict:
    keys = list(other)
    differing = [k for k in keys if not torch.equal(reference[k], other[k])]
    largest = max((float((reference[k] - other[k]).abs().max()) for k in differing), default=0.0)
    return {"clips": len(keys), "differ": len(differing), "max_abs_diff": largest}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cache_invariance", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="model preset whose encoder is run")
    p.add_argument("--clips", type=int, default=48, help="clips to encode (default: 48)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from qaudio.model.audio_lm import AudioLM

    model = AudioLM.build(PRESETS[args.preset], tokenizer_texts=["a b"]).eval()
    clips = make_clips(MIXES["short"], args.clips, args.seed)
    with torch.no_grad():
        batched16 = _sorted_batches(model, clips, 16)
        at_once = _fills(model, [clips])
        rows = [
            ("padded to the batch's longest: batches of 16 against 8", batched16, _sorted_batches(model, clips, 8)),
            ("padded to the batch's longest: batches of 16 against 1", batched16, _sorted_batches(model, clips, 1)),
            ("fill_cache: all at once against every other clip", at_once, _fills(model, [clips[::2]])),
            ("fill_cache: all at once against the clips between", at_once, _fills(model, [clips[1::2]])),
            ("fill_cache: all at once against one clip per fill", at_once, _fills(model, [[c] for c in clips])),
        ]
    results = [{"grouping": name, **_differ(reference, other)} for name, reference, other in rows]
    print(common.machine_line(common.machine_info(torch.device("cpu")), torch.get_num_threads()))
    print(f"{args.preset} encoder, {len(clips)} clips of 1-5 s; outputs compared bit for bit (fp32)\n")
    print(
        common.format_table(
            results,
            [
                ("grouping", "grouping", "s"),
                ("clips", "clips", "d"),
                ("differ", "differ", "d"),
                ("max_abs_diff", "max |diff|", ".1e"),
            ],
        )
    )
    if args.json:
        command = "python -m benchmarks.cache_invariance " + " ".join(sys.argv[1:] if argv is None else argv)
        common.write_json(args.json, {"command": command, "preset": args.preset, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the two benchmarks share: sizes, clips, the two systems, timing, memory and FLOPs.

The peer is the stack users fine-tune instead (LLaMA-Factory and ms-swift both wrap it):
Hugging Face ``Qwen2AudioForConditionalGeneration`` fed by ``Qwen2AudioProcessor``, which
pads every clip to 30 s of log-mels (3000 frames), runs the whole 30-s window through the
encoder, average-pools it 2x (25 audio tokens per second of real audio) and a linear projector.

Fairness, so that a ratio measures the design and nothing else:

* **Same sizes, same weights.** The peer's audio tower and LLM are built by the very functions
  qaudio builds its own with (:func:`qaudio.model.encoder.load_audio_tower`,
  :func:`qaudio.model.llm.load_language_model`) and their weights are loaded into the peer's
  modules with ``strict=True``, which fails unless every shape agrees. Both use one tokenizer
  (qaudio's byte-level BPE with the tag and audio tokens). The LM head is untied on both sides
  because Qwen2-Audio never ties it. Only the projectors differ, by design (qaudio: its
  configured projector; the peer: avg-pool + linear).
* **Same trainable set and optimizer**: frozen encoder, trained projector and full LLM; AdamW
  (lr 1e-3, betas (0.9, 0.98), weight decay 0.01 on matrices, qaudio's parameter groups) and
  gradient clipping at 1.0 on both.
* **Same inputs**: the same seeded clips and transcripts, in the same batches and order.
  Each side builds its inputs its own way (qaudio: :meth:`AudioLM.prepare`, real-length
  log-mels; the peer: its processor, 30-s log-mels and audio-token expansion), and that
  feature extraction is counted in the step time of both.
* **Memory is measured per process**: every (system, mode) runs in a fresh subprocess, and the
  peak is taken over the measured steps only (Linux ``/proc/self/clear_refs`` resets the
  resident-set high-water mark; on CUDA ``torch.cuda.reset_peak_memory_stats``).

Clips are synthetic, speech-shaped noise (amplitude-modulated at a syllable rate) of the mix's
durations, with transcripts of English words at a speaking rate: with random weights only the
durations and text lengths matter for speed, and they are what the mixes fix.

References: transformers ``models/qwen2_audio`` (modeling and processing); LibriSpeech (Panayotov
et al., ICASSP 2015) for the read-speech durations; ``torch.utils.flop_counter`` for FLOPs.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import datetime
import gc
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from qaudio.audio import SAMPLE_RATE
from qaudio.config import SCRATCH, TINY_RANDOM, ModelConfig, TrainableConfig, resolve_model_config
from qaudio.specs import get_task
from qaudio.tags import AUDIO_BOS, AUDIO_EOS, AUDIO_PLACEHOLDER

REPO_ROOT = Path(__file__).resolve().parents[1]
IGNORE_INDEX = -100  # labels outside the loss, on both sides
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
DEVICES = ("cpu", "cuda")


# ---- Duration mixes and clips ----------------------------------------------------------------


@dataclass(frozen=True)
class Mix:
    """A duration mix: clip lengths uniform in [min_s, max_s], transcripts at words_per_s."""

    name: str
    min_s: float
    max_s: float
    words_per_s: float
    description: str


MIXES: dict[str, Mix] = {
    # LibriSpeech train utterances are 1-35 s, mostly 10-17 s (mean 12.7 s in train-clean-100);
    # read speech runs at about 2.7 words per second.
    "librispeech": Mix("librispeech", 2.0, 20.0, 2.7, "LibriSpeech-like read speech, 2-20 s"),
    # Voice commands and short queries: a few words, 1-5 s.
    "short": Mix("short", 1.0, 5.0, 2.0, "short commands, 1-5 s"),
}


@dataclass
class Clip:
    samples: np.ndarray  # (T,) float32, 16 kHz mono
    text: str  # the transcript (the training target)

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def key(self) -> str:
        """A content hash, as the feature cache keys real clips by their bytes."""
        return hashlib.sha256(self.samples.tobytes()).hexdigest()


def _vocabulary() -> list[str]:
    """English words of the synthetic corpus's lexicon, plus function words."""
    from qaudio.synth.lexicon import ADJECTIVES, NOUNS, PLACES, VERBS_PAST, VERBS_PRESENT

    words = {w for nouns in NOUNS.values() for n in nouns for w in (n.en, n.en_pl)}
    words |= {a.en for a in ADJECTIVES} | {v.en for v in (*VERBS_PRESENT, *VERBS_PAST)}
    words |= {w for p in PLACES for w in p.en.split()}
    words |= set("the a an and of to in on with for at from by it is was he she they we you that this".split())
    return sorted(words)


def make_clips(mix: Mix, count: int, seed: int) -> list[Clip]:
    """``count`` clips of the mix, fixed by ``seed`` (the same in every process)."""
    rng = np.random.default_rng(seed)
    vocabulary = _vocabulary()
    clips = []
    for _ in range(count):
        seconds = float(rng.uniform(mix.min_s, mix.max_s))
        n = int(round(seconds * SAMPLE_RATE))
        t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi))  # ~4 syllables/s
        samples = (0.1 * envelope * rng.standard_normal(n)).astype(np.float32)  # (T,)
        words = max(1, int(round(seconds * mix.words_per_s)))
        text = " ".join(rng.choice(vocabulary, size=words))
        clips.append(Clip(samples, text))
    return clips


def batches_of(clips: Sequence[Clip], batch_size: int) -> list[list[Clip]]:
    return [list(clips[i : i + batch_size]) for i in range(0, len(clips), batch_size)]


def asr_prompt(style: str = "tags") -> str:
    """The ASR prompt qaudio trains with (the ``asr`` task spec's tags), used on both sides."""
    return get_task("asr").request("en").prompt(style)


# ---- Sizes and the two systems ---------------------------------------------------------------


def model_config(size: str, stack: int | None = None) -> ModelConfig:
    """A preset's sizes with random weights: what both systems are built at.

    The encoder is a random Whisper encoder of the preset's width, layers and heads; the LLM is
    built from scratch at the preset's sizes (qaudio's BPE tokenizer); the head is untied (the
    peer cannot tie it); the trainable set is fixed: frozen encoder, projector, full LLM.
    ``stack`` overrides the projector's downsampling (2 gives the peer's 25 tokens per second).
    """
    config = resolve_model_config(size)
    projector = config.projector if stack is None else replace(config.projector, stack=stack)
    return replace(
        config,
        encoder=replace(config.encoder, source=TINY_RANDOM, pad_to_30s=False),
        projector=projector,
        llm=replace(config.llm, source=SCRATCH, tokenizer=None, tie_embeddings=False),
        trainable=TrainableConfig(encoder="frozen", projector=True, llm="full"),
    )


def build_qaudio(config: ModelConfig, texts: Iterable[str], seed: int):
    """qaudio's AudioLM at ``config``, its BPE learnt from ``texts``."""
    from qaudio.model import AudioLM

    torch.manual_seed(seed)
    return AudioLM.build(config, tokenizer_texts=list(texts))


@dataclass
class Peer:
    """Qwen2AudioForConditionalGeneration with its processor, at qaudio's sizes and weights."""

    model: torch.nn.Module  # Qwen2AudioForConditionalGeneration
    processor: object  # Qwen2AudioProcessor
    tokenizer: object  # the processor's tokenizer (a copy of qaudio's)


def build_peer(config: ModelConfig, texts: Iterable[str], seed: int) -> Peer:
    """The peer at ``config``'s encoder and LLM sizes, with qaudio's encoder and LLM weights.

    Built from the same qaudio functions and seed as :func:`build_qaudio`, so the encoder and
    LLM start from the same weights; ``load_state_dict(strict=True)`` proves the shapes agree.
    """
    from transformers import (Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2AudioForConditionalGeneration,
                              Qwen2AudioProcessor, WhisperFeatureExtractor)

    from qaudio.model.encoder import load_audio_tower
    from qaudio.model.llm import load_language_model, load_tokenizer

    torch.manual_seed(seed)
    encoder, enc = load_audio_tower(config.encoder)  # a transformers WhisperEncoder
    tokenizer = load_tokenizer(config.llm, list(texts))
    llm, _ = load_language_model(config.llm, tokenizer)  # e.g. Qwen3ForCausalLM
    audio_config = Qwen2AudioEncoderConfig(
        num_mel_bins=enc.n_mels, d_model=enc.d_model, encoder_layers=enc.layers, encoder_attention_heads=enc.heads,
        encoder_ffn_dim=encoder.config.encoder_ffn_dim, max_source_positions=encoder.config.max_source_positions,
    )
    peer_config = Qwen2AudioConfig(audio_config=audio_config, text_config=llm.config.to_dict(),
                                   audio_token_index=tokenizer.convert_tokens_to_ids(AUDIO_PLACEHOLDER))
    model = Qwen2AudioForConditionalGeneration(peer_config)
    model.model.audio_tower.load_state_dict(encoder.state_dict(), strict=True)
    model.model.language_model.load_state_dict(llm.get_decoder().state_dict(), strict=True)
    model.lm_head.load_state_dict(llm.get_output_embeddings().state_dict(), strict=True)
    del encoder, llm
    # The trainable set of qaudio's model: frozen encoder; projector, LLM and head train.
    model.requires_grad_(True)
    model.model.audio_tower.requires_grad_(False)
    peer_tokenizer = copy.deepcopy(tokenizer)  # the processor sets its padding side
    processor = Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=enc.n_mels),
                                    tokenizer=peer_tokenizer)
    return Peer(model, processor, peer_tokenizer)


def peer_inputs(peer: Peer, clips: Sequence[Clip], prompt: str, train: bool) -> dict[str, torch.Tensor]:
    """The peer's batch, built its way: 30-s log-mels and the processor's audio-token expansion.

    Training (``train``): prompt + target + eos, right padded, labels -100 on the prompt and the
    audio slots (how LLaMA-Factory masks them). Generation: the prompt, left padded.
    """
    tok = peer.tokenizer
    tok.padding_side = "right" if train else "left"
    text = f"{AUDIO_BOS}{AUDIO_PLACEHOLDER}{AUDIO_EOS}{prompt}"
    enc = peer.processor(text=[text] * len(clips), audio=[c.samples for c in clips], sampling_rate=SAMPLE_RATE,
                         padding=True, return_tensors="pt")
    if not train:
        return dict(enc)
    targets = tok([c.text for c in clips], add_special_tokens=False)["input_ids"]
    rows, label_rows = [], []
    for ids, mask, target in zip(enc["input_ids"], enc["attention_mask"], targets):
        head = ids[mask.bool()].tolist()
        tail = [*target, tok.eos_token_id]
        rows.append(head + tail)
        label_rows.append([IGNORE_INDEX] * len(head) + tail)
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), tok.pad_token_id, dtype=torch.long)  # (B, L)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)  # (B, L)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)  # (B, L)
    for i, (row, label_row) in enumerate(zip(rows, label_rows)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
        labels[i, : len(row)] = torch.tensor(label_row)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "input_features": enc["input_features"],  # (B, n_mels, 3000): always 30 s
            "feature_attention_mask": enc["feature_attention_mask"]}  # (B, 3000)


def peer_audio_tokens(peer: Peer, seconds: float) -> int:
    """Audio tokens the peer gives a clip: its processor's formula on the real mel frames."""
    frames = torch.tensor(int(seconds * SAMPLE_RATE) // 160)  # Whisper's 10 ms hop
    return int(peer.model.model.audio_tower._get_feat_extract_output_lengths(frames)[1])


def decode_new_tokens(tokenizer, rows: torch.Tensor) -> list[str]:
    """Generated ids -> text, cut at the end token, padding dropped, tags kept (as qaudio decodes)."""
    texts = []
    for ids in rows.tolist():
        if tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id)]
        ids = [i for i in ids if i != tokenizer.pad_token_id]
        texts.append(tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))
    return texts


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    return {"total": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


# ---- Devices, timing and memory --------------------------------------------------------------


def resolve_device(device: str, dtype: str) -> torch.device:
    if device not in DEVICES:
        raise ValueError(f"--device {device!r}; expected one of: {', '.join(DEVICES)}")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r}; expected one of: {', '.join(DTYPES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device (use --device cpu)")
    return torch.device(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str):
    """bf16 mixed precision (fp32 master weights, as accelerate's ``mixed_precision="bf16"``) or nothing."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


class PeakMemory:
    """Peak memory over an interval: resident set on CPU, allocated tensors on CUDA (MiB).

    On Linux the resident-set high-water mark is reset by writing 5 to /proc/self/clear_refs,
    so the peak covers the measured steps only (not model building); where that is impossible
    it falls back to ``ru_maxrss`` since process start, and ``method`` says so.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.method = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "VmHWM after clear_refs"
        self.baseline_mib = 0.0

    def reset(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_mib = torch.cuda.memory_allocated(self.device) / 2**20
            return
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so it does not count as resident
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.method = "ru_maxrss since process start (clear_refs unavailable)"
        self.baseline_mib = (_status_kib("VmRSS") or 0) / 1024

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        hwm = _status_kib("VmHWM")
        if hwm is None or self.method.startswith("ru_maxrss"):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
        return hwm / 1024


# ---- FLOPs and the matmul peak ---------------------------------------------------------------


def _cpu_flash_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def _cpu_flash_attention_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out, query, key, value)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matmuls, convolutions and attention ``fn`` runs (torch's FlopCounterMode).

    torch 2.13's counter has no formula for the CPU flash-attention kernel that SDPA uses on
    CPU, so one is added (the same formula as for the GPU kernels).
    """
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops,
               aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_attention_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak_flops(device: torch.device, dtype: str, seconds: float = 1.5) -> float:
    """The best FLOP/s of a large square matmul in this process: the machine's practical limit.

    The size grows from 256 until one product takes a measurable time or reaches 2048 (CPU) /
    8192 (GPU): a CPU without native bf16 runs a 2048 bf16 product for minutes, and a smaller
    product tells the same story (that the peak is low) in a fraction of a second.
    """
    limit = 8192 if device.type == "cuda" else 2048
    n = 256
    while True:
        a = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
        b = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
        torch.matmul(a, b)  # warm-up: kernels chosen, pages touched
        synchronize(device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        synchronize(device)
        if n >= limit or time.perf_counter() - t0 > 0.02:
            break
        n *= 2
    best, deadline = 0.0, time.perf_counter() + seconds
    reps = 10 if device.type == "cuda" else 1
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        synchronize(device)
        best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0))
    return best


# ---- Machine, workers and output --------------------------------------------------------------


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        match = re.search(r"^Model name:\s+(.+)$", out, re.M)
        if match:
            return match.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_info(device: torch.device) -> dict:
    import transformers

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": cpu_cores(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_line(info: dict, threads: int = 0) -> str:
    """One line naming the machine, for the printed report."""
    n = threads or info["torch_threads"]
    line = (f"machine: {info['cpu']}, {info['cores']} cores ({n} torch thread{'s' if n != 1 else ''}), "
            f"torch {info['torch']}, transformers {info['transformers']}, {info['date']}")
    return line + (f", {info['gpu']}" if "gpu" in info else "")


def run_worker(module: str, spec: dict, timeout_s: float = 900) -> dict:
    """Run ``python -m module --worker SPEC`` in a fresh process and return its result dict.

    A fresh process per (system, mode) keeps peak memory and allocator state of one run from
    colouring the next.
    """
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", module, "--worker", json.dumps(spec), "--result", str(result)]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0 or not result.is_file():
            raise RuntimeError(f"benchmark worker {spec.get('system')}/{spec.get('mode', '')} failed "
                               f"(exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(result.read_text())


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A plain-text table: ``columns`` are (key, header, format spec); missing values print as '-',
    strings as they are (so a row can carry preformatted cells such as ratios)."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        line = []
        for key, _, fmt in columns:
            value = row.get(key)
            if value is None:
                line.append("-")
            else:
                line.append(format(value, fmt) if fmt and not isinstance(value, str) else str(value))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def load_warning(info_before: dict, results: Iterable[dict]) -> str | None:
    """A warning when other processes competed for the CPU while the benchmark ran."""
    loads = [info_before.get("load_average_1min", 0.0)] + [r.get("load_average_1min", 0.0) for r in results]
    worst = max(loads)
    cores = info_before.get("cores", 1)
    if worst > cores + 0.5:
        return (f"warning: the 1-min load average reached {worst:.1f} on {cores} cores: other processes competed "
                "for the CPU, so absolute figures are low and ratios less reliable; rerun on a quiet machine (on a "
                "shared one, --threads 1 keeps torch's threads from stalling on each other)")
    return None


def write_json(path: str | os.PathLike, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")

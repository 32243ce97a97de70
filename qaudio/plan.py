"""``qaudio plan``: how much memory a training step and an inference batch need, before running.

The prediction adds up tensors from the model's shapes (parameters counted exactly by
building the modules on PyTorch's ``meta`` device, which allocates nothing), the trainable
set, the optimizer and the audio length. All sizes in bytes; ``b`` is the bytes per value
(4 for float32; bf16 autocast stores matmul outputs in 2).

Per clip of ``C`` seconds: mel frames ``F = 100 C``; encoder frames ``T = ceil(F / 2)``;
audio tokens ``N_a`` (:func:`qaudio.model.lengths.audio_token_count`); sequence ``L = N_a + n_text``
(prompt, target, audio and end tokens); ``N_y`` target tokens. ``B`` clips per batch
(``B = batch_seconds / C``). Model: encoder width ``d``; LLM width ``H``, MLP width ``I``,
key/value width ``KV``, vocabulary ``V``, ``n_l`` layers; projector hidden ``h_p``.

Training step (AdamW, float32 master weights, as ``qaudio train`` runs it)::

    static   = 4 P  (qlora: 0.5625 bytes per frozen LLM weight, NF4 with block scales)
             + 12 P_train                           # AdamW's two moments + the gradients
             + inputs (B n_mels F 4 + 3 B L 8)
    encoder  = 11 B T d b                           # frozen: an MLP's working set + the output, not kept
    stored   = B L n_l (11 H + 4 I [+ 2 H + 2 KV for q/k norms]) b      # LLM trained in full, kept
             (frozen: 6 H + 3 I [+ H + KV]; LoRA: + each adapted input, its dropout mask and r)
             + 2 V H 4                              # frozen/LoRA: peft's tag-row copies of the embeddings
             + B (T d + N_a (2 h_p + 3 H)) b                            # projector, kept
    loss     = 3 B N_y V 4                          # logits, log-softmax, its gradient (float32)
    peak     = static + max(encoder, stored + loss)

The LLM's count: each decoder layer keeps, per token, the inputs of its two RMSNorms and
their normalised outputs (3 H each), the attention's query and its key and value repeated to
all heads (3 H, grouped-query attention with a padding mask repeats them), the attention
output and its reshaped copy (2 H), and the MLP's gate, up, activation and product (4 I);
Qwen3's per-head q/k norms keep 2 H + 2 KV more. The attention itself runs as a fused kernel
(no ``L x L`` matrix is kept). Gradients of the LLM run even when it is frozen or LoRA-tuned,
because the projector below it trains.

Inference (``generate``, weights in the inference dtype, float32 by default)::

    peak = 4 P + inputs + max(encoder, B (L + n_new) n_l 2 KV b + B L (2 H + I) b + B V 4)
           # KV cache for the whole answer, one layer's working set, one step's logits

Validated on CPU against the peak of PyTorch's own allocation events (the profiler's memory
records, which count every tensor the step allocates) for the ``tiny`` and ``demo`` presets:
``qaudio plan --measure`` prints both and the test suite checks them (within 15%). Not
modelled: a trained encoder's activations beyond a first-order count (``encoder=full|lora``),
second audio towers' activations (``ModelConfig.towers``: their weights, LoRA and the wider
projector input are counted, their working set is not),
allocator fragmentation and CUDA's context (add about 0.5 GB on a GPU), bf16 autocast (the
``b = 2`` rule is not validated here).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, cast

from .config import SCRATCH, ModelConfig, resolve_model_config
from .profiling import tensor_peak_bytes

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedModel

GB = 1e9
TRAIN_LLM = ("frozen", "lora", "full", "qlora")  # --train-llm; qlora: the LLM's base weights in 4-bit NF4
NF4_BYTES = 0.5 + 4 / 64  # 4-bit weights plus one float32 scale per block of 64 (bitsandbytes NF4)
HEADROOM = 0.9  # suggest batches whose predicted peak stays under 90% of the memory: allocator slack
TEXT_TOKENS_PER_SECOND = 4.0  # a spoken target's tokens per second of audio (about 2.5 words/s)
PROMPT_TOKENS = 10  # the tagged prompt, audio begin/end markers and the end token
# Tokenizer sizes of the hub LLMs the presets name (offline, a hub tokenizer cannot be read).
HUB_TOKENIZER_SIZE = {"Qwen/Qwen2.5-0.5B": 151_665, "Qwen/Qwen2.5-1.5B": 151_665, "Qwen/Qwen3-1.7B-Base": 151_669}
HUB_EMBEDDING_ROWS = {"Qwen/Qwen2.5-0.5B": 151_936, "Qwen/Qwen2.5-1.5B": 151_936, "Qwen/Qwen3-1.7B-Base": 151_936}


# ---- Shapes --------------------------------------------------------------------------------


@dataclass
class Shapes:
    """What the memory depends on, read from a model config (parameter counts exact)."""

    config: ModelConfig
    vocab: int  # LLM embedding rows
    params: dict[str, int]  # encoder, projector, llm_embeddings, llm_body
    trainable: int  # parameters that get gradients and optimizer state
    largest_trainable: int  # the biggest single trainable tensor (optimizer step temporaries)

    @property
    def total(self) -> int:
        return sum(self.params.values())


def _n_tags() -> int:
    from .tags import all_special_tokens

    return len(all_special_tokens())


def vocab_size(config: ModelConfig, model_dir: str | None = None) -> int:
    """The LLM's embedding rows: a saved model's tokenizer, a scratch BPE's upper bound, or a known hub LLM's."""
    if model_dir is not None:
        from transformers import AutoTokenizer

        return len(AutoTokenizer.from_pretrained(model_dir))
    llm = config.llm
    if llm.source == SCRATCH and llm.tokenizer is None:
        return llm.bpe_vocab_size + _n_tags() + 3  # merges may stop earlier on small texts: an upper bound
    name = llm.tokenizer or llm.source
    if name in HUB_TOKENIZER_SIZE:
        return max(HUB_EMBEDDING_ROWS[name], HUB_TOKENIZER_SIZE[name] + _n_tags())
    raise ValueError(
        f"the vocabulary size of {name!r} is not known offline; pass --vocab-size N "
        "(the tokenizer's length plus qaudio's tags)"
    )


def _meta_modules(config: ModelConfig, vocab: int) -> tuple[nn.Module, nn.Module, PreTrainedModel, list[nn.Module]]:
    """The encoder, projector, LLM and second towers built on the meta device: shapes without memory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from .config import TINY_RANDOM
    from .model.encoder import _random_encoder
    from .model.projectors import build_projector
    from .model.towers import TOWERS

    llm = config.llm
    with torch.device("meta"):
        encoder = _random_encoder(config.encoder)
        # A tower's config holds its sizes (resolved from the checkpoint once built): its random twin has its shapes.
        towers = [TOWERS[t.kind].load(replace(t, source=TINY_RANDOM))[0] for t in config.towers]
        projector = build_projector(config.projector, config.audio_width, llm.hidden_size)
        hf = AutoConfig.for_model(
            llm.arch,
            vocab_size=vocab,
            hidden_size=llm.hidden_size,
            num_hidden_layers=llm.num_layers,
            num_attention_heads=llm.num_heads,
            num_key_value_heads=llm.num_kv_heads,
            head_dim=llm.hidden_size // llm.num_heads,
            intermediate_size=llm.intermediate_size,
            tie_word_embeddings=llm.tie_embeddings,
        )
        lm = AutoModelForCausalLM.from_config(hf)
    return encoder, projector, lm, towers


def _lora_params(lm: nn.Module, targets: tuple[str, ...], r: int) -> int:
    """LoRA's A (r x in) and B (out x r) on every linear layer named in ``targets``."""
    import torch

    return sum(
        r * (m.in_features + m.out_features)
        for name, m in lm.named_modules()
        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets
    )


def model_shapes(config: ModelConfig, train_llm: str, vocab: int) -> Shapes:
    """Exact parameter counts by part, and what trains under ``train_llm`` (the config's encoder and projector settings)."""
    encoder, projector, lm, towers = _meta_modules(config, vocab)

    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    embeddings = count(lm.get_input_embeddings()) + (
        0 if config.llm.tie_embeddings else count(lm.get_output_embeddings())
    )
    params = {
        "encoder": count(encoder),
        "projector": count(projector),
        "llm_embeddings": embeddings,
        "llm_body": count(lm) - embeddings,
    }
    if towers:  # a key only where there are towers, so Whisper-only plans print as before
        params["towers"] = sum(count(t) for t in towers)
    t = config.trainable
    tag_rows = _n_tags() * config.llm.hidden_size * (1 if config.llm.tie_embeddings else 2)  # trainable tag-token rows
    trainable = {
        "frozen": tag_rows,
        "full": count(lm),
        "lora": _lora_params(lm, t.lora_targets, t.lora_r) + tag_rows,
        "qlora": _lora_params(lm, t.lora_targets, t.lora_r) + tag_rows,
    }[train_llm]
    sizes = [p.numel() for p in lm.parameters()] if train_llm == "full" else [tag_rows]
    if t.projector:
        trainable += params["projector"]
        sizes += [p.numel() for p in projector.parameters()]
    if t.encoder == "full":
        trainable += params["encoder"]
        sizes += [p.numel() for p in encoder.parameters()]
    elif t.encoder == "lora":
        trainable += _lora_params(encoder, t.encoder_lora_targets, t.lora_r)
    for tower, tower_config in zip(towers, config.towers, strict=True):
        if tower_config.train == "lora":
            trainable += _lora_params(tower, tower_config.lora_targets, t.lora_r)
    return Shapes(config, vocab, params, trainable, max(sizes))


# ---- The estimate --------------------------------------------------------------------------


@dataclass
class Workload:
    """One batch: ``batch`` clips of ``clip_seconds``, each with ``text_tokens`` of prompt and target."""

    batch: int
    clip_seconds: float
    text_tokens: int  # prompt + target + audio markers + end token, per example
    target_tokens: int  # tokens the loss is computed on, per example (the end token included)
    max_new_tokens: int = 256  # inference: the answer's length cap (the KV cache holds it all)

    @classmethod
    def for_speech(cls, batch: int, clip_seconds: float, max_new_tokens: int = 256) -> Workload:
        """Defaults for transcription: about 4 target tokens per second of speech."""
        target = max(1, math.ceil(TEXT_TOKENS_PER_SECOND * clip_seconds)) + 1
        return cls(batch, clip_seconds, PROMPT_TOKENS + target, target, max_new_tokens)


@dataclass
class Estimate:
    """A peak in bytes and the terms it is made of."""

    peak: int
    parts: dict[str, int] = field(default_factory=dict)


def _lengths(config: ModelConfig, w: Workload) -> tuple[int, int, int]:
    from .model.lengths import audio_token_count, encoder_frame_count, mel_frame_count

    samples = round(w.clip_seconds * 16_000)
    return mel_frame_count(samples), encoder_frame_count(samples), audio_token_count(samples, config)


def _encoder_transient(s: Shapes, w: Workload, T: int, b: int) -> int:
    """A frozen encoder's largest working set under no_grad, in a layer's MLP: the residual
    stream (d), the first linear's output and its GELU (4 d each) and the layer's output (d),
    all (B, T, .)."""
    d = s.config.encoder.d_model
    return w.batch * T * d * 10 * b


def _llm_per_token(s: Shapes, train_llm: str, b: int) -> int:
    """Bytes each token keeps for backward in the LLM's layers (see the module docstring)."""
    llm, t = s.config.llm, s.config.trainable
    H, inter = llm.hidden_size, llm.intermediate_size
    kv = llm.num_kv_heads * (H // llm.num_heads)
    qk_norm = llm.arch == "qwen3"
    if train_llm == "full":  # every linear keeps its input for its weight's gradient
        values = 11 * H + 4 * inter + (2 * H + 2 * kv if qk_norm else 0)
        return values * b * llm.num_layers
    # Frozen weights keep only what the gradient of their input needs: the norms' inputs (2 H),
    # the attention's q, k, v (repeated) and output (4 H), the MLP's gate, activation and up (3 inter).
    values = 6 * H + 3 * inter + (H + kv if qk_norm else 0)
    extra = 0
    if train_llm in ("lora", "qlora"):  # each adapted linear keeps its dropped-out input, the mask and A's output
        inputs = {"q_proj": H, "k_proj": H, "v_proj": H, "o_proj": H, "gate_proj": H, "up_proj": H, "down_proj": inter}
        for target in t.lora_targets:
            width = inputs.get(target, H)
            extra += width * b + (width if t.lora_dropout > 0 else 0) + t.lora_r * b
    return (values * b + extra) * llm.num_layers


def predict_training(s: Shapes, w: Workload, train_llm: str, bytes_per_value: int = 4) -> Estimate:
    cfg, b = s.config, bytes_per_value
    F, T, N_a = _lengths(cfg, w)
    L = N_a + w.text_tokens
    H, d = cfg.llm.hidden_size, cfg.encoder.d_model
    llm_weights = s.params["llm_embeddings"] + s.params["llm_body"]
    weights = 4 * (s.total - llm_weights) + (
        int(NF4_BYTES * s.params["llm_body"] + 4 * s.params["llm_embeddings"])
        if train_llm == "qlora"
        else 4 * llm_weights
    )
    parts = {
        "weights": weights,
        "gradients": 4 * s.trainable,
        "optimizer": 8 * s.trainable,  # AdamW: exp_avg and exp_avg_sq in float32
        "inputs": w.batch * cfg.encoder.n_mels * F * 4 + 3 * w.batch * L * 8,
    }
    encoder = _encoder_transient(s, w, T, b) + w.batch * T * d * b
    stored = w.batch * L * _llm_per_token(s, train_llm, b)
    if train_llm != "full":
        # peft's trainable tag-token rows rebuild the embedding matrix (and the tied head) in every
        # forward: two V x H float32 copies, kept for backward.
        stored += 2 * s.vocab * H * 4
    if cfg.trainable.projector:
        stored += w.batch * (T * d + N_a * (2 * cfg.projector.hidden + 3 * H)) * b
    if cfg.trainable.encoder != "frozen":  # first-order: 16 values per frame per layer (not validated)
        stored += w.batch * T * d * 16 * cfg.encoder.layers * b
    loss = 3 * w.batch * w.target_tokens * s.vocab * 4
    # After backward the activations are gone and the gradients are there; the optimizer step
    # then works one tensor at a time (two temporaries of the largest).
    after = parts["gradients"] + 2 * 4 * s.largest_trainable
    parts.update(encoder_working=encoder, activations=stored, loss=loss)
    static = parts["weights"] + parts["optimizer"] + parts["inputs"]
    return Estimate(static + max(encoder, stored + loss, after), parts)


def predict_inference(s: Shapes, w: Workload, bytes_per_value: int = 4) -> Estimate:
    cfg, b = s.config, bytes_per_value
    F, T, N_a = _lengths(cfg, w)
    prompt = N_a + w.text_tokens - w.target_tokens
    llm = cfg.llm
    kv = llm.num_kv_heads * (llm.hidden_size // llm.num_heads)
    parts = {
        "weights": s.total * b,
        "inputs": w.batch * cfg.encoder.n_mels * F * 4 + 2 * w.batch * prompt * 8,
        "encoder_working": _encoder_transient(s, w, T, b) + w.batch * T * cfg.encoder.d_model * b,
        "kv_cache": w.batch * (prompt + w.max_new_tokens) * llm.num_layers * 2 * kv * b,
        "llm_working": w.batch * prompt * (2 * llm.hidden_size + llm.intermediate_size) * b,
        "logits": w.batch * s.vocab * 4,
    }
    decode = parts["kv_cache"] + parts["llm_working"] + parts["logits"]
    return Estimate(parts["weights"] + parts["inputs"] + max(parts["encoder_working"], decode), parts)


def largest_batch(fits: Callable[[int], bool], limit: int = 1 << 16) -> int:
    """The largest batch size ``n`` with ``fits(n)`` (0 when not even one fits); fits is monotone."""
    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


# ---- Measuring (validation) ----------------------------------------------------------------


def _tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def measure(config: ModelConfig, w: Workload, train_llm: str) -> dict:
    """Build the model (float32, CPU), run one batch, and return the measured peaks in bytes
    (training: the second AdamW step, when its state exists; inference: ``generate``) with
    the batch's real token counts, so a prediction can use the same ones."""
    import numpy as np
    import torch

    from .model import AudioLM

    if train_llm not in ("frozen", "lora", "full"):
        raise ValueError(f"--measure builds the model qaudio trains; --train-llm {train_llm} cannot be built here")
    torch.manual_seed(0)
    config = replace(config, trainable=replace(config.trainable, llm=train_llm))
    words = "the quick brown fox jumps over the lazy dog".split()
    model = AudioLM.build(config, tokenizer_texts=[" ".join(words)] * 20)
    rng = np.random.default_rng(0)
    audio = [(0.1 * rng.standard_normal(int(w.clip_seconds * 16_000))).astype(np.float32) for _ in range(w.batch)]
    target = " ".join(words[k % len(words)] for k in range(max(1, w.target_tokens - 1)))
    ids = model.processor.tokenizer(target, add_special_tokens=False)["input_ids"][: max(1, w.target_tokens - 1)]
    target = cast(str, model.processor.tokenizer.decode(ids))  # one sequence in, one text out
    prompt = "<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>"
    batch = model.processor.prepare(audio, [prompt] * w.batch, [target] * w.batch)
    n_targets = int((batch["labels"][0] != -100).sum())
    real = Workload(
        w.batch, w.clip_seconds, batch["input_ids"].shape[1] - _lengths(model.config, w)[2], n_targets, w.max_new_tokens
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    model.train()

    def step():
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # the first step creates AdamW's state; the second is the steady state
    static = (
        _tensor_bytes(model.parameters())
        + _tensor_bytes(model.buffers())
        + _tensor_bytes(batch.values())
        + _tensor_bytes(t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t))
    )
    train_peak = static + tensor_peak_bytes(step)
    optimizer.state.clear()  # AdamW's moments: freed before inference is measured (step() keeps the optimizer)
    if train_llm != "full":  # inference runs a saved model: plain weights, without peft's training wrappers
        torch.manual_seed(0)
        model = AudioLM.build(
            replace(config, trainable=replace(config.trainable, llm="full")), tokenizer_texts=[" ".join(words)] * 20
        )
    model.eval()
    gen = model.processor.prepare(audio, [prompt] * w.batch)

    def generate():
        with torch.inference_mode():
            model.generate(gen, max_new_tokens=w.max_new_tokens, min_new_tokens=w.max_new_tokens)

    infer_static = _tensor_bytes(model.parameters()) + _tensor_bytes(model.buffers()) + _tensor_bytes(gen.values())
    infer_peak = infer_static + tensor_peak_bytes(generate)
    vocab = model.language_model.get_input_embeddings().weight.shape[0]
    return {"training": train_peak, "inference": infer_peak, "workload": real, "config": model.config, "vocab": vocab}


# ---- The command ---------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``24GB``, ``24GiB``, ``512MB``, ``80G`` -> bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?)B?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"--device-memory must look like 24GB, 24GiB or 512MB, got {text!r}")
    value, unit, binary = float(match.group(1)), match.group(2).upper(), match.group(3)
    scale = (1024 if binary else 1000) ** "_KMGT".index(unit or "_") if unit else 1
    return int(value * scale)


def available_memory() -> tuple[int, str]:
    """(bytes, what): the first CUDA device's total memory, else the machine's available RAM."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory, f"CUDA device 0 ({torch.cuda.get_device_name(0)})"
    import psutil

    return psutil.virtual_memory().available, "available RAM (no CUDA device)"


def _gb(n: int) -> str:
    return f"{n / GB:.3f} GB" if n < 10 * GB else f"{n / GB:.1f} GB"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="a preset (tiny, demo, ...), a ModelConfig .json, or a saved model directory"
    )
    parser.add_argument(
        "--train-llm", default=None, choices=TRAIN_LLM, help="what trains in the LLM (default: the config's)"
    )
    parser.add_argument(
        "--batch-seconds", type=float, required=True, help="audio seconds per batch (clips x clip length)"
    )
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="length of each clip (default 10; at most 30)")
    parser.add_argument(
        "--text-tokens",
        type=int,
        default=None,
        help="prompt + target tokens per example (default: 10 + 4 per second of audio)",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=256, help="inference: the answer's token cap (default 256)"
    )
    parser.add_argument("--device-memory", default=None, help="memory to plan for, e.g. 24GB (default: this machine's)")
    parser.add_argument(
        "--vocab-size", type=int, default=None, help="the LLM's vocabulary, when it cannot be read offline"
    )
    parser.add_argument(
        "--measure",
        action="store_true",
        help="also build the model on CPU, run one batch and print the measured peaks (small models only)",
    )


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    if not 0 < args.clip_seconds <= 30:
        raise ValueError(f"--clip-seconds must be in (0, 30] (the encoder's window), got {args.clip_seconds}")
    if args.batch_seconds < args.clip_seconds:
        raise ValueError(
            f"--batch-seconds ({args.batch_seconds}) must hold at least one clip of --clip-seconds "
            f"({args.clip_seconds})"
        )
    config = resolve_model_config(args.model)
    train_llm = args.train_llm or config.trainable.llm
    model_dir = args.model if Path(args.model).is_dir() else None
    vocab = args.vocab_size or vocab_size(config, model_dir)
    shapes = model_shapes(config, train_llm, vocab)
    batch = int(args.batch_seconds // args.clip_seconds)

    def workload(n: int) -> Workload:
        w = Workload.for_speech(n, args.clip_seconds, args.max_new_tokens)
        if args.text_tokens is not None:
            w = replace(w, text_tokens=args.text_tokens, target_tokens=max(1, args.text_tokens - PROMPT_TOKENS))
        return w

    train = predict_training(shapes, workload(batch), train_llm)
    infer = predict_inference(shapes, workload(batch))
    memory, where = (parse_size(args.device_memory), "--device-memory") if args.device_memory else available_memory()
    budget = int(memory * HEADROOM)
    parts = ", ".join(f"{k} {v:,}" for k, v in shapes.params.items())
    print(
        f"model {args.model}: {shapes.total:,} parameters ({parts}); "
        f"LLM {train_llm}: {shapes.trainable:,} trainable; vocabulary {vocab:,}"
    )
    print(f"batch: {batch} clip(s) of {args.clip_seconds:g} s ({batch * args.clip_seconds:g} s of audio)")
    print(f"training peak:  {_gb(train.peak)}  (" + ", ".join(f"{k} {_gb(v)}" for k, v in train.parts.items()) + ")")
    print(f"inference peak: {_gb(infer.peak)}  (" + ", ".join(f"{k} {_gb(v)}" for k, v in infer.parts.items()) + ")")
    fit_train = largest_batch(lambda n: predict_training(shapes, workload(n), train_llm).peak <= budget)
    fit_infer = largest_batch(lambda n: predict_inference(shapes, workload(n)).peak <= budget)
    print(f"memory: {_gb(memory)} ({where}); planning for {int(HEADROOM * 100)}% of it")
    for kind, n, peak in (("training", fit_train, train.peak), ("inference", fit_infer, infer.peak)):
        if n == 0:
            print(
                f"{kind}: does not fit even one {args.clip_seconds:g}-s clip; try --train-llm lora or qlora, "
                "shorter clips, or a device with more memory"
            )
        else:
            print(
                f"{kind}: largest batch that fits: {n} clips (--batch-seconds {n * args.clip_seconds:g})"
                + ("" if peak <= budget else f"; the requested {batch} does not fit")
            )
    if train_llm == "qlora":
        print(
            "note: qlora is predicted (4-bit NF4 base weights, bitsandbytes' layout) but qaudio train does not "
            "offer it yet; --train-llm lora is what it runs"
        )
    if args.measure:
        measured = measure(config, workload(batch), train_llm)
        real = measured["workload"]
        exact = model_shapes(measured["config"], train_llm, measured["vocab"])
        for kind, peak, predicted in (
            ("training", measured["training"], predict_training(exact, real, train_llm).peak),
            ("inference", measured["inference"], predict_inference(exact, real).peak),
        ):
            print(
                f"measured {kind} peak on CPU: {_gb(peak)}; predicted for the same batch: {_gb(predicted)} "
                f"({100 * (predicted - peak) / peak:+.1f}%)"
            )
    return 0 if max(train.peak, infer.peak) <= budget else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="qaudio plan")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))

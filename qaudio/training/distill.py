"""Knowledge distillation: a student learns a saved teacher's token distributions on the targets.

``qaudio distill --teacher DIR --student PRESET_OR_CONFIG ...`` is ``qaudio train --teacher DIR
--model PRESET_OR_CONFIG ...``: the same data pipeline, loop and checkpoints; only the loss of
each micro-batch changes (Hinton et al., 2015, "Distilling the Knowledge in a Neural Network",
section 2):

    loss = (1 - alpha) * CE(references) + alpha * T^2 * KL(softmax(z_teacher / T) || softmax(z_student / T))

The KL is taken on the target positions only: the positions whose next token the
cross-entropy already scores (the target text and ``<eos>``; never the prompt, the audio
slots or padding), and it is summed per token and divided once, like the cross-entropy
(:func:`qaudio.training.losses.batch_loss`, by ``--loss-weighting``). ``T^2`` keeps the KL's
gradient on the scale of the cross-entropy's as ``T`` changes.

The student's forward pass with labels runs its LM head once, on exactly those positions
(:meth:`AudioLM._loss`); a forward hook on the head keeps that output, so the KL reads the
same logits the cross-entropy used, and the teacher's are caught the same way.

The teacher runs in eval mode under ``torch.no_grad`` and is no part of the trained model, so
no checkpoint or saved model holds it; a resumed run loads it again from ``--teacher`` as the
run's config recorded it. The student reads the teacher's batches as they are, so both must
share the tokenizer (a from-scratch student LLM is built with the teacher's), the prompt style
and the number of audio tokens per clip. When both audio towers are the same frozen encoder
(same config and weights: the feature cache's encoder identity), the encoder runs once per
batch and the teacher reads its outputs, or the cached ones under ``--cache-encoder``;
otherwise the teacher runs its own encoder on the batch's log-mels.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from .batching import CTC_INPUTS
from .config import TrainConfig
from .losses import batch_loss, output_loss

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..config import ModelConfig
    from ..model.audio_lm import AudioLM, AudioLMOutput

TEXT_INPUTS = ("input_ids", "attention_mask", "labels")  # the rest of a live batch is what the audio towers read
LONGEST_CHECKED_S = 30  # audio token counts are compared for every length up to this (Whisper's window)


# ---- the KL term -------------------------------------------------------------------------------------


def kl_sums(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, target_tokens: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Per example, the summed KL(teacher_T || student_T) of its target tokens: (B,) float32.

    ``*_logits`` (N, V) are the target positions of the batch in row-major order (the order the
    forward's loss uses), ``target_tokens`` (B,) how many of them each example has.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"teacher and student logits differ in shape: teacher {tuple(teacher_logits.shape)}, student "
            f"{tuple(student_logits.shape)} (target positions x vocabulary); they must share the tokenizer"
        )
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)  # (N, V)
    log_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)  # (N, V)
    token_kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="none").sum(dim=-1)  # (N,)
    counts = target_tokens.to(token_kl.device)
    rows = torch.repeat_interleave(torch.arange(len(counts), device=token_kl.device), counts)  # (N,) example of each
    return torch.zeros(len(counts), device=token_kl.device).index_add(0, rows, token_kl)  # (B,)


@contextlib.contextmanager
def head_outputs(model: AudioLM) -> Iterator[list[torch.Tensor]]:
    """Inside: every output of ``model``'s LM head, in order. A forward with labels runs the head
    once, on the target positions only, so the list then holds those logits: (N, V)."""
    from ..model.trainable import unwrap

    caught: list[torch.Tensor] = []
    head = unwrap(model.language_model).get_output_embeddings()
    handle = head.register_forward_hook(lambda module, args, output: caught.append(output))
    try:
        yield caught
    finally:
        handle.remove()


def _target_logits(caught: list[torch.Tensor], out: AudioLMOutput, who: str) -> torch.Tensor:
    assert out.target_tokens is not None, "the forward had no labels"
    expected = int(out.target_tokens.sum())
    if len(caught) != 1 or caught[0].shape[0] != expected:
        raise RuntimeError(
            f"the {who}'s LM head ran {len(caught)} time(s) with {[tuple(c.shape) for c in caught]} outputs; "
            f"distillation expects one run on the {expected} target positions (AudioLM._loss)"
        )
    return caught[0]


@dataclass
class DistillStep:
    """One micro-batch's forward: the student's output (its CE sums), the objective, the KL alone."""

    out: AudioLMOutput  # the student's forward output: loss_sum (cross-entropy), target_tokens
    loss: torch.Tensor  # (1 - alpha) * CE + alpha * T^2 * KL, a scalar with a gradient
    kl: torch.Tensor  # the batch's KL (divided as the CE is), detached


@dataclass
class Distiller:
    """The teacher and how its distributions enter the student's loss; :meth:`forward` replaces
    the plain ``model(**inputs)`` + :func:`output_loss` of a training micro-batch."""

    teacher: AudioLM  # in eval mode, no gradients
    alpha: float  # weight of the KL term
    temperature: float  # softmax temperature of both distributions
    shares_encoder: bool  # True: the teacher reads the student's encoder outputs
    autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext  # the run's mixed precision

    def forward(
        self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], weighting: str, ctc_weight: float = 0.0
    ) -> DistillStep:
        """``model``: the student as the loop holds it (possibly DDP-wrapped); ``inputs``: a collated
        batch. Its CTC targets (``--ctc-weight``) go to the student alone: the teacher has no CTC term."""
        from accelerate.utils import extract_model_from_parallel

        student: AudioLM = extract_model_from_parallel(model)
        ctc = {k: inputs[k] for k in CTC_INPUTS if k in inputs}
        inputs = {k: v for k, v in inputs.items() if k not in CTC_INPUTS}
        if self.shares_encoder and "input_features" in inputs:
            # The frozen encoder runs once; both models read its outputs, as from the feature cache.
            with self.autocast():  # log-mels (and second towers' inputs) -> states
                states, lengths = student.encode(**{k: v for k, v in inputs.items() if k not in TEXT_INPUTS})
            inputs = {k: v for k, v in inputs.items() if k in TEXT_INPUTS}
            inputs.update(encoder_states=states, encoder_lengths=lengths)
        with head_outputs(student) as caught:
            out = model(**inputs, **ctc)
        student_logits = _target_logits(caught, out, "student")
        with torch.no_grad(), self.autocast(), head_outputs(self.teacher) as caught:
            teacher_out = self.teacher(**inputs)
        teacher_logits = _target_logits(caught, teacher_out, "teacher")
        assert out.target_tokens is not None  # a training batch has labels
        tokens = out.target_tokens.float()
        kl = batch_loss(kl_sums(student_logits, teacher_logits, out.target_tokens, self.temperature), tokens, weighting)
        ce = output_loss(out, weighting, ctc_weight)
        loss = (1 - self.alpha) * ce + self.alpha * self.temperature**2 * kl
        return DistillStep(out, loss, kl.detach())


# ---- the teacher, checked against the student ----------------------------------------------------------


def teacher_directory(teacher: str) -> Path:
    """The teacher's local directory (a hub id is downloaded once, as inference loads it)."""
    from ..model.checkpoint import local_directory

    return local_directory(teacher)


def student_tokenizer_dir(cfg: TrainConfig, config: ModelConfig) -> Path | None:
    """Where a from-scratch student LLM takes its tokenizer: the teacher's (a new BPE would give
    another vocabulary); None when distillation is off or the student's LLM brings its own."""
    from ..config import SCRATCH

    if cfg.teacher is None or config.llm.source != SCRATCH or config.llm.tokenizer is not None:
        return None
    return teacher_directory(cfg.teacher)


def load_teacher(teacher: str, device: torch.device | str = "cpu") -> AudioLM:
    """The saved model ``teacher`` (directory or hub id) in eval mode, every parameter frozen."""
    from ..model.audio_lm import AudioLM

    with torch.random.fork_rng(devices=[]):  # building its modules draws initial weights: not from the run's RNG
        model = AudioLM.from_pretrained(str(teacher_directory(teacher)), device=device)
    model.requires_grad_(False)
    return model.eval()


def _vocabulary_size(model: AudioLM) -> int:
    from ..model.trainable import unwrap

    return int(unwrap(model.language_model).get_output_embeddings().weight.shape[0])


def check_compatible(student: AudioLM, teacher: AudioLM, teacher_name: str) -> None:
    """Refuse a pair whose batches or logits do not line up, saying what differs and what to do."""
    from ..model.lengths import audio_token_count

    s_tok, t_tok = student.processor.tokenizer, teacher.processor.tokenizer
    s_size, t_size = _vocabulary_size(student), _vocabulary_size(teacher)
    if s_size != t_size or len(s_tok) != len(t_tok):
        raise ValueError(
            f"the student's vocabulary has {len(s_tok)} tokens ({s_size} logits) but the teacher {teacher_name}'s has "
            f"{len(t_tok)} ({t_size} logits); the KL compares distributions over one vocabulary. Build the student "
            f"with the teacher's tokenizer: a from-scratch LLM takes it when --llm-tokenizer is not given, or pass "
            f"--llm-tokenizer {teacher_name}"
        )
    s_vocab, t_vocab = s_tok.get_vocab(), t_tok.get_vocab()
    moved = sum(1 for token, i in t_vocab.items() if s_vocab.get(token) != i)
    if moved:
        raise ValueError(
            f"the student's and the teacher {teacher_name}'s vocabularies both have {len(t_tok)} tokens, but {moved} "
            "of them have other ids; build the student with the teacher's tokenizer "
            f"(--llm-tokenizer {teacher_name})"
        )
    if student.config.prompt_style != teacher.config.prompt_style:
        raise ValueError(
            f"the teacher {teacher_name} was trained on {teacher.config.prompt_style!r} prompts and the student "
            f"uses {student.config.prompt_style!r}; the teacher reads the student's batches, so they must match: "
            "give the student the teacher's prompt_style"
        )
    samples = torch.arange(1, LONGEST_CHECKED_S * 100 + 1) * 160  # every 10 ms hop up to 30 s
    s_count = audio_token_count(samples, student.config)
    t_count = audio_token_count(samples, teacher.config)
    if not torch.equal(s_count, t_count):
        at = int((s_count != t_count).nonzero()[0, 0])
        raise ValueError(
            f"a {int(samples[at]) / 16000:.2f} s clip is {int(s_count[at])} audio tokens for the student but "
            f"{int(t_count[at])} for the teacher {teacher_name} (projector {student.config.projector.name} stack "
            f"{student.config.projector.stack} vs {teacher.config.projector.name} stack "
            f"{teacher.config.projector.stack}); the teacher reads the student's batches, so the counts must "
            "match: give the student the teacher's projector kind and --projector-stack (its width may differ)"
        )


def shares_encoder(student: AudioLM, teacher: AudioLM, precision: str) -> bool:
    """True when the teacher can read the student's encoder outputs: the student's encoder is frozen
    and both towers are the same encoder (the feature cache's identity: config, weights, features)."""
    from .feature_cache import encoder_identity

    if student.config.trainable.encoder != "frozen":
        return False
    return encoder_identity(student, student.processor, precision) == encoder_identity(
        teacher, teacher.processor, precision
    )


def setup_distiller(
    cfg: TrainConfig, student: torch.nn.Module, accelerator: Accelerator, precision: str, log: Callable[[str], None]
) -> Distiller | None:
    """With ``--teacher``: load it on the run's device, check it against the student (the run's
    AudioLM, not yet prepared), decide who encodes; None without."""
    from ..model.audio_lm import AudioLM

    if cfg.teacher is None:
        return None
    if not isinstance(student, AudioLM):
        raise TypeError(f"distillation trains an AudioLM student, got {type(student).__name__}")
    teacher = load_teacher(cfg.teacher, accelerator.device)
    check_compatible(student, teacher, cfg.teacher)
    shared = shares_encoder(student, teacher, precision)
    if not shared:
        if cfg.cache_encoder:
            raise ValueError(
                f"--cache-encoder holds the student's encoder outputs, but the teacher {cfg.teacher} has another "
                "encoder (other config or weights), which needs the audio itself: drop --cache-encoder (the "
                "teacher then runs its own encoder), or distill into a student with the teacher's frozen encoder"
            )
        s_fe, t_fe = student.processor.feature_extractor.to_dict(), teacher.processor.feature_extractor.to_dict()
        if s_fe != t_fe:
            raise ValueError(
                f"the teacher {cfg.teacher} reads other log-mels than the student ({t_fe.get('feature_size')} vs "
                f"{s_fe.get('feature_size')} mel bins) and cannot run on the student's batches; give the student "
                "an encoder with the teacher's features"
            )
    s_llm, t_llm = (sum(p.numel() for p in m.language_model.parameters()) for m in (student, teacher))
    log(
        f"qaudio train: distilling from {cfg.teacher} (LLM {t_llm / 1e6:.2f} M parameters) into the student (LLM "
        f"{s_llm / 1e6:.2f} M), alpha {cfg.distill_alpha:g}, T {cfg.distill_temperature:g}; "
        + (
            "both read one run of the shared frozen encoder per batch"
            if shared
            else "the encoders differ, so the teacher runs its own encoder on every batch"
        )
    )
    return Distiller(teacher, cfg.distill_alpha, cfg.distill_temperature, shared, accelerator.autocast)


# ---- qaudio distill ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``qaudio train``'s flags, and ``--student`` for ``--model``."""
    from ..train import add_arguments as train_arguments

    train_arguments(parser)
    parser.add_argument(
        "--student",
        metavar="PRESET|FILE|DIR",
        default=None,
        help="the student: a model preset, a ModelConfig .json file (e.g. the teacher's sizes with fewer "
        "LLM layers) or a saved model directory; the same as --model",
    )


def main(args: argparse.Namespace) -> int:
    """``qaudio train`` with ``--model`` from ``--student``; refuses a run without a teacher."""
    from ..train import main as train_main
    from .config import config_from_args

    model = getattr(args, "model", None)
    if args.student is not None:
        if model is not None and model != args.student:
            raise ValueError(f"--student {args.student} and --model {model} name two students; give one")
        args.model = args.student
    if config_from_args(args).teacher is None:
        raise ValueError("qaudio distill needs --teacher DIR: a saved qaudio model directory or hub id")
    return train_main(args)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qaudio.training.distill", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return main(parser.parse_args(argv))
    except (ValueError, FileNotFoundError) as e:
        print(f"qaudio distill: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())

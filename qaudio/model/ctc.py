"""An auxiliary CTC loss on the audio slots: each clip's projector outputs against its transcript.

A causal LLM learns to read the audio slots only through the next-token loss of the text that
follows them: in the demo's from-scratch LLM, English ASR stayed near the language model's guess
(dev WER 34-48%) for the first 800 of 2,000 steps before it "took off". CTC (Graves et al.,
ICML 2006) on the projector's outputs gives the projector a direct signal from the first step:
slot t should name the token being spoken there, or the blank. The classifier is the LLM's own
token embedding matrix (no new weights; the pad token is the blank): the audio slots are pulled
towards the embeddings of the words they hold, which the LLM can then copy. The same auxiliary
loss on encoder or adapter outputs is common in LLM-based ASR (e.g. CTC-aided alignment in
SLAM-ASR's follow-ups, Wav2Prompt); here it is opt-in (``qaudio train --ctc-weight``).

Both sides are compared at unit RMS, so the logits' scale is fixed (cosine-like: about sqrt(H) for a slot equal to a token's embedding)
and the loss cannot shrink by growing the embeddings: the embeddings' RMS is taken without
gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ctc_logits(audio: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """(B, N, H) audio slots and (V, H) token embeddings -> (B, N, V) float32 logits, each side at
    unit RMS, divided by sqrt(H)."""
    hidden = audio.shape[-1]
    slots = F.rms_norm(audio.float(), (hidden,))
    tokens = embeddings.float() / embeddings.detach().float().pow(2).mean().sqrt().clamp(min=1e-12)
    return slots @ tokens.T / hidden**0.5


def ctc_loss(
    audio: torch.Tensor,
    counts: torch.Tensor,
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
) -> torch.Tensor:
    """The mean CTC loss per transcript token over the clips that have a transcript; 0 when none has.

    ``audio`` (B, N, H) and ``counts`` (B,): the projector's outputs and real lengths; ``targets``
    (B, S) token ids, valid up to ``target_lengths`` (B,), 0 for a clip without a transcript. A
    transcript longer than its clip's slots can align to adds nothing (``zero_infinity``)."""
    rows = target_lengths > 0  # (B,)
    tokens = target_lengths[rows].sum()
    if not bool(rows.any()):
        return audio.new_zeros((), dtype=torch.float32)
    log_probs = ctc_logits(audio[rows], embeddings).log_softmax(dim=-1)  # (R, N, V)
    loss = F.ctc_loss(
        log_probs.transpose(0, 1),  # (N, R, V), as ctc_loss takes it
        targets[rows],
        counts[rows],
        target_lengths[rows],
        blank=blank,
        reduction="sum",
        zero_infinity=True,
    )
    return loss / tokens.clamp(min=1)

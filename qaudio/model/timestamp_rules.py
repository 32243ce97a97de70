"""The grammar of timestamped answers, kept while decoding.

A timestamped answer is ``<|s1|> word1<|e1|><|s2|> word2<|e2|>...``: a start time, the word's
tokens, an end time, then the next word's start time or the end of the answer. Left to itself
a model can leave that grammar: it may repeat the last word instead of closing it with its end
time, because the probability of "a time comes next" is spread over many neighbouring time
tokens while one text token takes it whole, so a single text token wins although a time is far
likelier. The rules, after Whisper's ``ApplyTimestampRules`` (Radford et al., 2022, section
4.5 and ``whisper/decoding.py``), applied on the rows whose prompt asks for timestamps:

- the answer opens with a time; a start time (the first token, or the second time of a pair)
  is followed by a token that begins a word (where the tokenizer marks words with a leading
  space); an end time (a time after text) by a time or the end of the answer;
  text is followed by the rest of its word or its end time, never by a second word (a token
  with a leading space) nor by the end of the answer; other tags never appear;
- times never go back (a time is at or after the one before it) and never pass the end of the
  audio the prompt holds;
- where both text and a time may come, a time is forced when the allowed times together are
  more probable than the likeliest text token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from ..tags import all_special_tokens, time_tokens
from .processor import known_token_ids


@dataclass(frozen=True)
class TimestampVocabulary:
    """What the grammar needs to know of a tokenizer, as (V,) tensors over its ids."""

    step_of: torch.Tensor  # the time token's index on the 10 ms grid, -1 for every other token
    text: torch.Tensor  # bool: tokens an answer's words are made of (not a tag, a time or the end)
    word_starts: torch.Tensor  # bool: text tokens that begin a word (a leading space)
    eos_id: int

    @property
    def last_step(self) -> int:
        return int(self.step_of.max())

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase) -> TimestampVocabulary | None:
        """The tokenizer's vocabulary for the grammar; None where it lacks the time tokens or a tag
        (a released model's own tokenizer, e.g. Qwen2-Audio's): such a model is never asked for timestamps."""
        times, tags = known_token_ids(tokenizer, time_tokens()), known_token_ids(tokenizer, all_special_tokens())
        if times is None or tags is None or tokenizer.eos_token_id is None:
            return None
        size = len(tokenizer)
        step_of = torch.full((size,), -1, dtype=torch.long)
        step_of[times] = torch.arange(len(times))
        text = torch.ones(size, dtype=torch.bool)
        text[tags] = False
        text[tokenizer.eos_token_id] = False
        pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
        starts = torch.tensor([tokenizer.convert_tokens_to_string([p]).startswith(" ") for p in pieces])
        return cls(step_of, text, starts & text, int(tokenizer.eos_token_id))

    def padded(self, size: int, device: torch.device) -> TimestampVocabulary:
        """The same over ``size`` ids (a model may score rows past its tokenizer: never text, never a time)."""
        extra = size - len(self.step_of)

        def pad(x: torch.Tensor, value: int | bool) -> torch.Tensor:
            return torch.cat([x, torch.full((extra,), value, dtype=x.dtype)]).to(device)

        return TimestampVocabulary(
            pad(self.step_of, -1), pad(self.text, False), pad(self.word_starts, False), self.eos_id
        )


class TimestampRules(LogitsProcessor):
    """Masks the scores of timestamped rows so their answers follow the timestamp grammar.

    ``last_step`` (B,) is, per prompt, the latest time its audio allows (an index on the time
    grid), or -1 where the prompt does not ask for timestamps. The input ids a processor sees are
    the new tokens only (generation from ``inputs_embeds``); beams and returned sequences repeat
    each prompt's row.
    """

    def __init__(self, vocabulary: TimestampVocabulary, last_step: torch.Tensor):
        self.vocabulary = vocabulary
        self.last_step = last_step.long()
        self._padded: TimestampVocabulary | None = None  # the vocabulary over the scores' ids, made at the first step

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        device, size = scores.device, scores.shape[1]
        if self._padded is None:
            self._padded = self.vocabulary.padded(size, device)
        step_of, is_text, word_starts, eos = (
            self._padded.step_of,
            self._padded.text,
            self._padded.word_starts,
            self._padded.eos_id,
        )
        last_step = self.last_step.to(device).repeat_interleave(scores.shape[0] // self.last_step.shape[0])
        out = scores.clone()
        for r in (last_step >= 0).nonzero().flatten().tolist():
            steps = step_of[input_ids[r].to(device)]  # (n,): -1 for text
            n = steps.shape[0]
            if n and int(input_ids[r, -1]) == eos:
                continue  # finished: generate pads it
            times = steps[steps >= 0]
            earliest = int(times[-1]) if times.numel() else 0  # times never go back
            later_times = (step_of >= earliest) & (step_of <= last_step[r])
            if n and steps[-1] >= 0 and (n == 1 or steps[-2] >= 0):  # a start time: a word begins
                allowed = is_text & word_starts if word_starts.any() else is_text
            elif n and steps[-1] >= 0:  # an end time: the next start, or the end of the answer
                allowed = later_times.clone()
                allowed[eos] = True
            elif n == 0:  # the first start time
                allowed = later_times
            else:  # text: the rest of the word (not a second word), or its end time
                allowed = (is_text & ~word_starts) | later_times
                logprobs = torch.log_softmax(scores[r].float(), dim=-1)
                text = logprobs[allowed & is_text]
                if later_times.any() and (not text.numel() or torch.logsumexp(logprobs[later_times], 0) > text.max()):
                    allowed = later_times
            if not allowed.any():  # no time left before the audio's end: the answer can only end
                allowed = torch.zeros_like(allowed)
                allowed[eos] = True
            out[r, ~allowed] = -float("inf")
        return cast(torch.FloatTensor, out)

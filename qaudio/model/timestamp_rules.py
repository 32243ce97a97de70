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

from typing import cast

import torch
from transformers import LogitsProcessor


class TimestampRules(LogitsProcessor):
    """Masks the scores of timestamped rows so their answers follow the timestamp grammar.

    ``time_ids`` (T,) are the time tokens' ids in time order; ``last_step`` (B,) is, per prompt,
    the latest time its audio allows (an index into ``time_ids``), or -1 where the prompt does not
    ask for timestamps; ``tag_ids`` are the tags (time tokens among them or not), never an
    answer's text; ``word_starts`` (V,) marks the tokens that begin a word (a leading space), of
    which a timed word has one; ``eos_id`` ends an answer. The input ids a processor sees are the
    new tokens only (generation from ``inputs_embeds``); beams and returned sequences repeat each
    prompt's row.
    """

    def __init__(
        self,
        time_ids: torch.Tensor,
        last_step: torch.Tensor,
        tag_ids: torch.Tensor,
        word_starts: torch.Tensor,
        eos_id: int,
    ):
        self.time_ids = time_ids.long()
        self.last_step = last_step.long()
        self.tag_ids = tag_ids.long()
        self.word_starts = word_starts.bool()
        self.eos_id = eos_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        device, vocab = scores.device, scores.shape[1]
        last_step = self.last_step.to(device).repeat_interleave(scores.shape[0] // self.last_step.shape[0])
        time_ids = self.time_ids.to(device)
        step_of = torch.full((max(vocab, int(time_ids.max()) + 1),), -1, dtype=torch.long, device=device)
        step_of[time_ids] = torch.arange(len(time_ids), device=device)  # the time index of a token, -1 if none
        is_text = torch.ones(vocab, dtype=torch.bool, device=device)
        is_text[time_ids[time_ids < vocab]] = False
        is_text[self.tag_ids[self.tag_ids < vocab].to(device)] = False
        is_text[self.eos_id] = False
        word_starts = torch.zeros(vocab, dtype=torch.bool, device=device)
        word_starts[: len(self.word_starts)] = self.word_starts[:vocab].to(device)
        out = scores.clone()
        for r in (last_step >= 0).nonzero().flatten().tolist():
            steps = step_of[input_ids[r].to(device)]  # (n,): -1 for text
            n = steps.shape[0]
            if n and int(input_ids[r, -1]) == self.eos_id:
                continue  # finished: generate pads it
            times = steps[steps >= 0]
            earliest = int(times[-1]) if times.numel() else 0  # times never go back
            later_times = torch.zeros(vocab, dtype=torch.bool, device=device)
            later_times[time_ids[earliest : int(last_step[r]) + 1]] = True
            if n and steps[-1] >= 0 and (n == 1 or steps[-2] >= 0):  # a start time: a word begins
                allowed = is_text & word_starts if word_starts.any() else is_text
            elif n and steps[-1] >= 0:  # an end time: the next start, or the end of the answer
                allowed = later_times.clone()
                allowed[self.eos_id] = True
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
                allowed[self.eos_id] = True
            out[r, ~allowed] = -float("inf")
        return cast(torch.FloatTensor, out)

"""Timestamped answers are decoded under their grammar (qaudio.model.timestamp_rules).

A toy vocabulary first (ids 0-4 text, 5 the end, 6-15 ten time tokens, 16 another tag), then an
untrained tiny model: whatever its weights, a timestamped answer keeps the grammar, its times
never go back nor pass the clip's end, and the other rows of the batch decode as they do alone.
"""

import numpy as np
import torch

from qaudio.config import PRESETS
from qaudio.model import AudioLM
from qaudio.model.timestamp_rules import TimestampRules, TimestampVocabulary
from qaudio.prompt import prompt_for
from qaudio.tags import parse_timestamped

EOS, TIMES, TAG = 5, torch.arange(6, 16), 16  # time token k is id 6 + k
WORD = 2
VOCABULARY = TimestampVocabulary(
    step_of=torch.tensor([-1] * 6 + list(range(10)) + [-1]),
    text=torch.tensor([i < 5 for i in range(17)]),
    word_starts=torch.tensor([i in (1, 2) for i in range(17)]),  # ids 1 and 2 begin a word (" the", " bottle")
    eos_id=EOS,
)


def _rules(last_steps=(9,)) -> TimestampRules:
    return TimestampRules(VOCABULARY, torch.tensor(last_steps))


def _allowed(rules: TimestampRules, generated: list[int], scores: torch.Tensor | None = None) -> set[int]:
    if scores is None:  # text likelier than all times together: the grammar alone decides
        scores = torch.zeros(17)
        scores[:5] = 3.0
    scores = scores[None]
    out = rules(torch.tensor([generated], dtype=torch.long).reshape(1, -1), scores)
    return set(torch.isfinite(out[0]).nonzero().flatten().tolist())


def test_the_grammar_of_a_timestamped_answer():
    rules = _rules()
    times = set(TIMES.tolist())
    assert _allowed(rules, []) == times  # the answer opens with a start time
    assert _allowed(rules, [8]) == {1, 2}  # a start time: a word begins
    assert _allowed(rules, [8, WORD]) == {0, 3, 4} | (times - {6, 7})  # the word goes on, or ends not before it began
    assert _allowed(rules, [8, WORD, 0]) == {0, 3, 4} | (times - {6, 7})  # never a second word in one timed span
    assert _allowed(rules, [8, WORD, 11]) == (times - {6, 7, 8, 9, 10}) | {
        EOS
    }  # the next start (>= the end), or the end
    assert _allowed(rules, [8, WORD, 11, 11]) == {1, 2}  # a pair: the next word begins
    assert _allowed(rules, [8, WORD, 15]) == {15, EOS}  # the last time: it can repeat as a start, or the answer ends
    assert TAG not in _allowed(rules, [8, WORD])  # another tag is never text


def test_the_vocabulary_read_from_a_tokenizer_and_rows_past_it():
    tokenizer = AudioLM.build(PRESETS["tiny"], ["where is the white bottle"] * 20).processor.tokenizer
    vocabulary = TimestampVocabulary.of(tokenizer)
    assert vocabulary is not None and vocabulary.last_step == 3000
    assert int(vocabulary.step_of[tokenizer.convert_tokens_to_ids("<|1.25|>")]) == 125
    bottle, tail = tokenizer(" bottle", add_special_tokens=False)["input_ids"][0], tokenizer.tokenize(" bottle")
    assert vocabulary.word_starts[bottle] and tail[0].startswith("Ġ")
    assert not vocabulary.text[[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|en|>")]].any()
    padded = vocabulary.padded(len(tokenizer) + 3, torch.device("cpu"))
    assert padded.step_of[-3:].tolist() == [-1] * 3 and not padded.text[-3:].any()


def test_no_time_passes_the_end_of_the_audio():
    rules = _rules(last_steps=(3,))  # the audio ends at time step 3 (id 9)
    assert _allowed(rules, []) == {6, 7, 8, 9}
    assert _allowed(rules, [8, WORD]) == {0, 3, 4, 8, 9}
    assert _allowed(rules, [9, WORD, 9]) == {9, EOS}


def test_a_time_is_forced_where_the_times_together_outweigh_the_likeliest_text_token():
    rules = _rules()
    scores = torch.full((17,), -10.0)
    scores[3] = 0.0  # the rest of a word ("bor" again) is likelier than any one time (the loop that never ends)...
    scores[9:16] = -1.0  # ...but the seven later times together are likelier than it
    assert _allowed(rules, [7, WORD], scores) == set(range(7, 16))
    scores[9:16] = -3.0  # together less likely: the word may go on
    assert 3 in _allowed(rules, [7, WORD], scores)


def test_rows_without_timestamps_and_finished_rows_are_left_alone_and_beams_repeat_rows():
    rules = _rules(last_steps=(-1, 9))  # the first prompt asks for no timestamps
    scores = torch.randn(4, 17)  # 2 prompts x 2 beams
    scores[:, :5] += 5.0  # text likelier than all times together
    generated = torch.tensor([[8, WORD], [8, WORD], [8, WORD], [8, EOS]])
    out = rules(generated, scores)
    torch.testing.assert_close(out[:2], scores[:2])  # the first prompt's beams: no timestamps asked
    assert torch.isinf(out[2, EOS]) and torch.isfinite(out[2, 3])
    torch.testing.assert_close(out[3], scores[3])  # ended: generate pads it


def test_an_untrained_model_answers_in_the_grammar_and_other_rows_are_unchanged():
    model = AudioLM.build(PRESETS["tiny"], ["where is the white bottle"] * 20).eval()
    rng = np.random.default_rng(0)
    audio = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 24000)]
    prompts = [prompt_for("asr", "en", timestamps=True), prompt_for("asr", "en")]
    torch.manual_seed(0)
    both = model.processor.batch_decode(model.generate(model.processor.prepare(audio, prompts), max_new_tokens=24))
    alone = model.processor.batch_decode(
        model.generate(model.processor.prepare(audio[1:], prompts[1:]), max_new_tokens=24)
    )
    assert both[1] == alone[0]
    grad_at_projection, called = [], []
    project = model._project
    model._project = lambda *args: (grad_at_projection.append(torch.is_grad_enabled()), project(*args))[1]

    def caller_processor(input_ids, scores):  # a caller's own processor runs beside the grammar
        called.append(True)
        return scores

    ids = model.generate(
        model.processor.prepare(audio[:1], prompts[:1]), max_new_tokens=40, logits_processor=[caller_processor]
    )[0]
    assert called and grad_at_projection == [False]  # and the audio is projected without a gradient
    raw = model.processor.tokenizer.decode(ids, skip_special_tokens=False).replace("<|endoftext|>", "")
    parsed = parse_timestamped(raw)
    assert raw.startswith("<|") and parsed.words, raw
    # random weights may write text until the cap: then only the last word lacks its end time
    assert not parsed.problems or (
        len(ids) == 40 and parsed.problems == [f"word {parsed.words[-1][0]!r} has no end time"]
    )
    times = [t for _, start, end in parsed.words for t in (start, end)]
    assert times == sorted(times) and times[-1] <= 1.04  # 13 slots of 80 ms hold the 1 s clip
    assert "<|" not in "".join(word for word, _, _ in parsed.words)  # no other tag in the text

"""The auxiliary CTC loss on the audio slots (qaudio.model.ctc, ``qaudio train --ctc-weight``)."""

import math

import torch
from test_train import tiny_config, tiny_model_and_items, train_losses

from qaudio.model.ctc import ctc_logits, ctc_loss
from qaudio.train import Collator, train
from qaudio.training.batching import transcript
from qaudio.training.distill import Distiller, load_teacher
from qaudio.training.metrics_log import read_metrics

BLANK = 0


def test_logits_compare_unit_rms_vectors_whatever_their_scale():
    torch.manual_seed(0)
    audio, embeddings = torch.randn(2, 5, 16), torch.randn(10, 16)
    logits = ctc_logits(audio, embeddings)
    assert logits.shape == (2, 5, 10)
    assert torch.allclose(ctc_logits(audio * 50, embeddings * 0.01), logits, atol=1e-5)
    # a slot equal to a token's embedding scores that token highest, at about sqrt(H)
    hit = ctc_logits(embeddings[None, 3:4] * 0.02, embeddings)[0, 0]
    assert int(hit.argmax()) == 3 and 0.5 * math.sqrt(16) < float(hit[3]) < 2 * math.sqrt(16)


def test_loss_is_low_where_the_slots_spell_the_transcript_and_ignores_clips_without_one():
    torch.manual_seed(0)
    embeddings = torch.randn(12, 32)
    spelled = embeddings[[BLANK, 5, BLANK, 7, 7, BLANK, 9, BLANK]] * 3  # blank 5 blank 7 7 blank 9 blank
    noise = torch.randn(8, 32)
    audio = torch.stack([spelled, noise, noise])  # (3, 8, 32)
    counts = torch.tensor([8, 8, 8])
    targets = torch.tensor([[5, 7, 9], [5, 7, 9], [0, 0, 0]])
    loss = ctc_loss(audio, counts, embeddings, targets, torch.tensor([3, 0, 0]), blank=BLANK)
    noisy = ctc_loss(audio[1:2], counts[1:2], embeddings, targets[1:2], torch.tensor([3]), blank=BLANK)
    assert float(loss) < 0.5 * float(noisy)
    # the clips without a transcript (length 0) add nothing: the same loss as the first clip alone
    alone = ctc_loss(audio[:1], counts[:1], embeddings, targets[:1], torch.tensor([3]), blank=BLANK)
    assert torch.allclose(loss, alone)
    none = ctc_loss(audio, counts, embeddings, targets, torch.zeros(3, dtype=torch.long), blank=BLANK)
    assert float(none) == 0.0
    # a transcript longer than its slots can hold adds nothing instead of an infinite loss
    long = ctc_loss(audio[:1], torch.tensor([2]), embeddings, targets[:1], torch.tensor([3]), blank=BLANK)
    assert math.isfinite(float(long))


def test_collator_gives_the_transcript_tokens_of_speech_in_its_own_language_only(corpus):
    model, items = tiny_model_and_items(corpus)
    first = {}
    for i, it in enumerate(items):
        first.setdefault((it.example.task, it.example.audio_lang == it.example.text_lang), i)
    chosen = [first[k] for k in sorted(first)]
    batch = Collator(model.processor, items, "tags", seed=0, max_seconds=30.0, ctc=True)([(-1, i) for i in chosen])
    targets, lengths = batch.inputs["ctc_targets"], batch.inputs["ctc_lengths"]
    tok = model.processor.tokenizer
    kinds = set()
    for row, i in enumerate(chosen):
        example = items[i].example
        text = transcript(items[i])
        if example.task in ("asr", "srwt"):
            assert text == example.target  # the synthetic manifests' plain transcript, for srwt too
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert targets[row, : int(lengths[row])].tolist() == ids
            kinds.add("transcript")
        else:  # translation (another language), captions, answers, labels: no CTC target
            assert text is None and int(lengths[row]) == 0
            kinds.add("none")
    assert kinds == {"transcript", "none"}
    plain = Collator(model.processor, items, "tags", seed=0, max_seconds=30.0)([(-1, i) for i in chosen])
    assert "ctc_targets" not in plain.inputs


def test_ctc_gradient_reaches_the_projector_and_embeddings_but_not_the_llm_layers(corpus):
    model, items = tiny_model_and_items(corpus)
    asr = [i for i, it in enumerate(items) if it.example.task == "asr"][:4]
    batch = Collator(model.processor, items, "tags", seed=0, max_seconds=30.0, ctc=True)([(-1, i) for i in asr])
    out = model(**batch.inputs)
    assert out.ctc_loss is not None and out.ctc_loss.item() > 0
    out.ctc_loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("projector."))
    assert grads["language_model.model.embed_tokens.weight"].abs().sum() > 0
    assert all(g is None for n, g in grads.items() if ".layers." in n)


def test_a_run_with_ctc_logs_it_and_differs_from_one_without(corpus, tmp_path):
    tasks = "asr,aac"
    with_ctc = train(tiny_config(corpus, tmp_path / "ctc", tasks=tasks, ctc_weight=0.5))
    without = train(tiny_config(corpus, tmp_path / "plain", tasks=tasks))
    records = read_metrics(with_ctc.parent, "train")
    assert all(math.isfinite(r["ctc_loss"]) and r["ctc_loss"] > 0 for r in records)
    assert all("ctc_loss" not in r for r in read_metrics(without.parent, "train"))
    # step 1 (same init and batch): the objective is the LM loss plus 0.5 x the CTC loss; after it, other updates
    a, b = train_losses(with_ctc.parent), train_losses(without.parent)
    ctc = {r["step"]: r["ctc_loss"] for r in records}
    assert math.isclose(a[1], b[1] + 0.5 * ctc[1], rel_tol=1e-5)
    lm = {
        name: [r["task_loss"] for r in read_metrics(run.parent, "train")]
        for name, run in (("a", with_ctc), ("b", without))
    }
    assert lm["a"][0] == lm["b"][0] and lm["a"][-1] != lm["b"][-1]


def test_a_distilled_student_gets_the_ctc_term_and_the_shared_encoder_pass_takes_no_transcripts(corpus, tmp_path):
    teacher_dir = train(tiny_config(corpus, tmp_path / "teacher", max_steps=2))
    model = load_teacher(str(teacher_dir))  # the student: a copy, so that both share the tokenizer
    _, items = tiny_model_and_items(corpus)
    asr = [i for i, it in enumerate(items) if it.example.task == "asr"][:3]
    batch = Collator(model.processor, items, "tags", seed=0, max_seconds=30.0, ctc=True)([(-1, i) for i in asr])
    distiller = Distiller(load_teacher(str(teacher_dir)), alpha=0.0, temperature=1.0, shares_encoder=True)
    plain = distiller.forward(model, batch.inputs, "token")  # the shared encoder pass would refuse them as tower inputs
    with_ctc = distiller.forward(model, batch.inputs, "token", ctc_weight=0.5)
    assert plain.out.ctc_loss is not None and "ctc_targets" in batch.inputs
    assert torch.allclose(with_ctc.loss, plain.loss + 0.5 * plain.out.ctc_loss)

"""Knowledge distillation on the tiny preset: the KL term, its positions, the checks on the
teacher, and distillation runs (alpha 0 = plain training, the KL falls, checkpoints hold the
student only, resume is exact)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import tiny_config, train_losses  # (the corpus fixture is in conftest.py)

from qaudio.config import resolve_model_config, with_overrides
from qaudio.model import AudioLM
from qaudio.model.processor import IGNORE_INDEX, target_labels
from qaudio.specs import registry
from qaudio.train import Collator, train
from qaudio.training import checkpoint as ckpt
from qaudio.training.bad_data import BadDataLog
from qaudio.training.corpus import load_items, parse_recipes, tokenizer_texts
from qaudio.training.distill import Distiller, check_compatible, load_teacher
from qaudio.training.losses import output_loss
from qaudio.training.metrics_log import read_metrics

# A student with half the tiny LLM's layers and width, and a narrower projector.
SMALLER = {"llm": {"hidden_size": 32, "num_layers": 1, "intermediate_size": 64}, "projector": {"hidden": 64}}


@pytest.fixture(scope="module")
def teacher(corpus, tmp_path_factory) -> Path:
    """A tiny model trained for a few steps: the teacher's directory."""
    return train(tiny_config(corpus, tmp_path_factory.mktemp("teacher"), max_steps=4, lr=3e-3))


@pytest.fixture(scope="module")
def student_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("student") / "student.json"
    with_overrides(resolve_model_config("tiny"), **SMALLER).save(path)
    return path


@pytest.fixture(scope="module")
def batch(corpus, teacher) -> dict:
    """One collated training batch of four tasks, with prompts of different lengths and padding."""
    model = load_teacher(str(teacher))
    cfg = tiny_config(corpus, Path("unused"))
    items = load_items(parse_recipes(cfg.recipes), "train", registry("tasks"), "tags", BadDataLog(), keep_all=True)
    first = {}
    for i, it in enumerate(items):
        first.setdefault(it.example.task, i)
    chosen = [first[t] for t in ("asr", "aqa", "aac", "ser")]
    return Collator(model.processor, items, "tags", seed=0, max_seconds=30.0)([(-1, i) for i in chosen]).inputs


def smaller_student(teacher_dir: Path) -> AudioLM:
    """A random student of the SMALLER sizes with the teacher's tokenizer."""
    config = with_overrides(resolve_model_config("tiny"), llm={**SMALLER["llm"], "tokenizer": str(teacher_dir)})
    torch.manual_seed(1)
    return AudioLM.build(with_overrides(config, projector=SMALLER["projector"]))


def test_the_kl_is_zero_against_a_copy_of_the_teacher_and_positive_against_another_student(teacher, batch):
    model = load_teacher(str(teacher))
    copy = load_teacher(str(teacher))
    for shared in (True, False):  # the teacher reads the student's encoder outputs, or runs its own encoder
        step = Distiller(model, alpha=0.5, temperature=2.0, shares_encoder=shared).forward(copy, batch, "token")
        assert abs(float(step.kl)) < 1e-6
    other = Distiller(model, alpha=0.5, temperature=2.0, shares_encoder=True).forward(
        smaller_student(teacher), batch, "token"
    )
    assert float(other.kl) > 1e-4  # small: both are near-uniform after a few steps, but not equal


def test_alpha_weights_the_cross_entropy_and_the_scaled_kl(teacher, batch):
    model, student = load_teacher(str(teacher)), smaller_student(teacher)
    with torch.no_grad():
        plain = output_loss(student(**batch), "example")
        only_ce = Distiller(model, 0.0, 3.0, True).forward(student, batch, "example")
        mixed = Distiller(model, 0.25, 3.0, True).forward(student, batch, "example")
    assert torch.equal(only_ce.loss, plain)  # alpha 0: exactly the plain objective
    torch.testing.assert_close(mixed.loss, 0.75 * plain + 0.25 * 9.0 * mixed.kl)


def test_prompt_positions_carry_no_kl(teacher, batch):
    """The KL sums over the target positions only: recomputed here from full-sequence logits, it
    matches on the target positions, and the prompt positions (where the two models also differ)
    would have changed it."""
    model, student = load_teacher(str(teacher)), smaller_student(teacher)
    temperature = 2.0
    with torch.no_grad():
        step = Distiller(model, 1.0, temperature, True).forward(student, batch, "token")
        unlabelled = {k: v for k, v in batch.items() if k != "labels"}
        full_s, full_t = student(**unlabelled).logits[:, :-1], model(**unlabelled).logits[:, :-1]  # (B, L-1, V)
    per_position = torch.nn.functional.kl_div(
        torch.log_softmax(full_s / temperature, -1),
        torch.log_softmax(full_t / temperature, -1),
        log_target=True,
        reduction="none",
    ).sum(-1)  # (B, L-1): the KL of the prediction made at every position
    labels = target_labels(batch["input_ids"], batch["attention_mask"], batch["labels"], model.token_ids)
    targets = labels[:, 1:] != IGNORE_INDEX
    prompt = (batch["attention_mask"][:, 1:] == 1) & ~targets & (batch["input_ids"][:, 1:] != model.token_ids.audio)
    assert prompt.sum() > 0 and per_position[prompt].sum() > 0.01
    expected = per_position[targets].sum() / targets.sum()
    torch.testing.assert_close(step.kl, expected, rtol=1e-4, atol=1e-6)


def test_a_student_with_another_vocabulary_is_refused_naming_both_sizes(corpus, teacher):
    model = load_teacher(str(teacher))
    cfg = tiny_config(corpus, Path("unused"))
    items = load_items(parse_recipes(cfg.recipes), "train", registry("tasks"), "tags", BadDataLog(), keep_all=True)
    config = with_overrides(resolve_model_config("tiny"), llm={"bpe_vocab_size": 300})
    other = AudioLM.build(config, tokenizer_texts(items, "tags"))
    sizes = len(other.processor.tokenizer), len(model.processor.tokenizer)
    assert sizes[0] != sizes[1]
    with pytest.raises(ValueError, match=rf"student's vocabulary has {sizes[0]} tokens.*has {sizes[1]}"):
        check_compatible(other, model, str(teacher))
    stacked = with_overrides(resolve_model_config("tiny"), llm={"tokenizer": str(teacher)}, projector={"stack": 8})
    with pytest.raises(ValueError, match=r"audio tokens for the student.*--projector-stack"):
        check_compatible(AudioLM.build(stacked), model, str(teacher))


@pytest.mark.slow
def test_alpha_zero_distillation_trains_exactly_as_the_plain_run(corpus, teacher, tmp_path):
    train(tiny_config(corpus, tmp_path / "plain", max_steps=3, dev_split="none"))
    distilled_cfg = tiny_config(
        corpus, tmp_path / "distilled", max_steps=3, dev_split="none", teacher=str(teacher), distill_alpha=0.0
    )
    train(distilled_cfg)
    plain, distilled = train_losses(tmp_path / "plain"), train_losses(tmp_path / "distilled")
    assert list(plain) == [1, 2, 3] and plain == distilled
    assert all(r["distill_kl"] > 0 for r in read_metrics(tmp_path / "distilled", "train"))


def test_a_smaller_student_learns_the_teacher_and_its_checkpoints_hold_the_student_only(
    corpus,
    teacher,
    student_config,
    tmp_path,
):
    out = tmp_path / "student"
    cfg = tiny_config(
        corpus,
        out,
        model=str(student_config),
        teacher=str(teacher),
        distill_alpha=0.9,
        max_steps=8,
        lr=3e-3,
        warmup=0.0,
        save_every=4,
        dev_split="none",
    )
    final = train(cfg)
    kl = [r["distill_kl"] for r in read_metrics(out, "train")]
    assert len(kl) == 8 and sum(kl[-2:]) < sum(kl[:2])  # the KL to the teacher falls
    # The checkpoint holds the student's trainable weights only; the saved model is the student.
    student = AudioLM.from_pretrained(final)
    saved = load_file(str(ckpt.latest_checkpoint(out) / ckpt.TRAINABLE_FILE))
    assert sorted(saved) == sorted(student.trainable_parameter_names())
    params = dict(student.named_parameters())
    assert all(saved[n].shape == params[n].shape for n in saved)  # the student's shapes, none of the teacher's
    stored = load_file(str(final / "model.safetensors"))
    stored_llm = sum(t.numel() for k, t in stored.items() if k.startswith("language_model."))
    teacher_llm = sum(p.numel() for p in load_teacher(str(teacher)).language_model.parameters())
    assert stored_llm < teacher_llm / 2  # the saved model is the small student alone
    assert student.config.llm.num_layers == 1 and student.config.llm.hidden_size == 32
    assert json.loads((final / "config.json").read_text())["model"]["llm"]["tokenizer"] is None
    assert student.processor.tokenizer.get_vocab() == load_teacher(str(teacher)).processor.tokenizer.get_vocab()


@pytest.mark.slow
def test_a_resumed_distillation_repeats_the_losses_exactly(corpus, teacher, student_config, tmp_path):
    def config(out: Path):
        return tiny_config(
            corpus,
            out,
            model=str(student_config),
            teacher=str(teacher),
            max_steps=4,
            save_every=2,
            keep_checkpoints=3,
            dev_split="none",
        )

    train(config(tmp_path / "whole"))
    # The run as if killed after its step-2 checkpoint: later checkpoints and the model gone.
    shutil.copytree(tmp_path / "whole", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step-00000004")
    shutil.rmtree(tmp_path / "resumed" / "model")
    resumed_cfg = config(tmp_path / "resumed")
    resumed_cfg.teacher = None  # not given again: the run's recorded teacher is loaded
    train(resumed_cfg)
    whole, resumed = train_losses(tmp_path / "whole"), train_losses(tmp_path / "resumed")
    assert list(whole) == [1, 2, 3, 4] and resumed == whole
    kls = [[r["distill_kl"] for r in read_metrics(run, "train")] for run in (tmp_path / "whole", tmp_path / "resumed")]
    assert kls[0] == kls[1]


def test_the_distill_command_is_train_with_a_teacher(teacher, tmp_path, capsys):
    from qaudio.cli import main

    assert main(["distill", "--student", "tiny", "--output-dir", str(tmp_path)]) == 2
    assert "needs --teacher DIR" in capsys.readouterr().err
    assert main(["distill", "--student", "tiny", "--model", "demo", "--teacher", str(teacher)]) == 2
    assert "two students" in capsys.readouterr().err
    args = ["--student", "tiny", "--teacher", str(teacher), "--distill-alpha", "0.7", "--print-config"]
    assert main(["distill", *args]) == 0
    printed = capsys.readouterr().out
    assert "model: tiny" in printed and f"teacher: {teacher}" in printed and "distill_alpha: 0.7" in printed


def test_the_compress_table_judges_the_student_against_its_teacher():
    from benchmarks import compress

    teacher = {"wer": 20.0}
    student = {"wer": 21.0, "student_llm_parameters": 49, "teacher_llm_parameters": 100}
    (line,) = compress._student_against_teacher({"fp32": teacher, "student": student})
    assert "0.49x the parameters, WER +1.00 points" in line and line.endswith(": met")
    (line,) = compress._student_against_teacher({"fp32": teacher, "student": {**student, "wer": 22.0}})
    assert line.endswith("MISSED")  # 2 points worse
    (line,) = compress._student_against_teacher({"fp32": teacher, "student": {**student, "student_llm_parameters": 63}})
    assert line.endswith("MISSED")  # not half the size
    assert compress._student_against_teacher({"student": student}) == []  # no teacher row: nothing to judge

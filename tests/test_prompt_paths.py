"""One request path: ``qaudio prompt`` prints byte for byte what training and inference feed the model.

For every task of the registry, every prompt style and a grid of options (languages, word
timestamps, question, output instruction; valid and invalid values), the prompt is taken
three ways and compared:

- ``qaudio prompt`` through the CLI's ``main``, its stdout captured;
- training: the collator (:class:`qaudio.training.batching.Collator`) on an equivalent manifest
  example (timestamps: an example of the task's timestamped variant), the prompts intercepted
  where they reach the model's ``prepare``;
- inference: :class:`qaudio.infer.Pipeline` running the request over a stand-in model whose
  answer is the prompt that reached it.

A combination one path refuses must be refused by the others with the same typed error
(:class:`qaudio.task.RequestError`) and the same message.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile as sf
from fixtures.standin_lm import StandInLM

from qaudio.cli import main as cli_main
from qaudio.data import Example
from qaudio.infer import Pipeline
from qaudio.specs import registry
from qaudio.tags import PROMPT_STYLES, UNKNOWN_LANGUAGE
from qaudio.task import RequestError
from qaudio.training.batching import Collator
from qaudio.training.corpus import Item

SR = 16_000
OPTIONS = {  # None: the option is not given; the last value of each is invalid for every task
    "audio_lang": (None, "de", UNKNOWN_LANGUAGE, "xx"),
    "text_lang": (None, "zh", "klingon"),
    "timestamps": (False, True),
    "question": (None, "What do you hear?", "  "),
    "instruction": (None, "caption_audiocaps", "nope"),
}
DEFAULTS = {name: values[0] for name, values in OPTIONS.items()}
# Every combination (the slow test), and a quick grid: the valid values of languages,
# timestamps and question crossed, each other value on its own.
FULL_GRID = [dict(zip(OPTIONS, values)) for values in itertools.product(*OPTIONS.values())]
QUICK_GRID = [
    {**DEFAULTS, "audio_lang": a, "text_lang": t, "timestamps": ts, "question": q}
    for a, t, ts, q in itertools.product(
        OPTIONS["audio_lang"][:-1], OPTIONS["text_lang"][:-1], (False, True), OPTIONS["question"][:-1]
    )
]
QUICK_GRID += [
    {**DEFAULTS, name: value}
    for name, values in OPTIONS.items()
    if name != "timestamps"
    for value in values[1:]
    if {**DEFAULTS, name: value} not in QUICK_GRID
]


class EchoLM(StandInLM):
    """Answers every window with the prompt that reached it, so Result.raw is that prompt."""

    def __init__(self, style: str):
        super().__init__()
        self.config = type(self.config)(prompt_style=style)

    def generate(self, batch, max_new_tokens=128, **kwargs):
        return list(batch["prompts"])


class PromptRecorder:
    """Stands in for the model a training collator prepares inputs with: records the prompts."""

    def __init__(self):
        self.prompts: list[str] = []

    def prepare(self, audios, prompts, targets=None):
        self.prompts += prompts
        return {}


def cli_prompt(capsys, task: str, style: str, options: dict) -> tuple[str, str | None]:
    """(stdout, error message or None) of ``qaudio prompt`` for ``options``."""
    argv = ["prompt", "--task", task, "--style", style]
    for name, value in options.items():
        if name == "timestamps":
            argv += ["--timestamps"] if value else []
        elif value is not None:
            argv += [f"--{name.replace('_', '-')}", value]
    code = cli_main(argv)
    out, err = capsys.readouterr()
    if code == 0:
        return out, None
    assert code == 2 and err.startswith("qaudio prompt: error: "), err
    return out, err[len("qaudio prompt: error: ") :].rstrip("\n")


def training_example(task, options: dict, audio: str) -> tuple[Example, object] | None:
    """The manifest example (and the task it trains) equivalent to a request; None when a
    manifest cannot say it (a language outside the schema, or timestamps of a task that has none)."""
    audio_lang = options["audio_lang"] or "en"
    if options["timestamps"] and not task.timestamps:
        if task.timestamped_variant is None:
            return None
        task = task.timestamped_variant
    # The documented default of the answer's language: the spoken one, or English for non-speech audio.
    text_lang = options["text_lang"] or (audio_lang if task.speech and audio_lang != UNKNOWN_LANGUAGE else "en")
    try:
        example = Example(
            id="x",
            audio=audio,
            duration=0.5,
            task=task.name,
            audio_lang=audio_lang,
            text_lang=text_lang,
            target="hello",
            words=[["hello", 0.0, 0.5]],
            label="neutral",
            question=options["question"],
            meta={"instruction": options["instruction"]} if options["instruction"] else {},
        )
    except ValueError:
        return None
    return example, task


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("clip") / "tone.wav"
    t = np.arange(SR // 2) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    return str(path)


@pytest.mark.parametrize("style", list(PROMPT_STYLES))
@pytest.mark.parametrize("task_name", list(registry("tasks")))
def test_cli_training_and_inference_prompts_are_identical(task_name, style, audio, capsys):
    check_paths(task_name, style, QUICK_GRID, audio, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("style", list(PROMPT_STYLES))
@pytest.mark.parametrize("task_name", list(registry("tasks")))
def test_every_option_combination_gives_identical_prompts(task_name, style, audio, capsys):
    check_paths(task_name, style, FULL_GRID, audio, capsys)


def check_paths(task_name: str, style: str, grid: list[dict], audio: str, capsys) -> None:
    task = registry("tasks")[task_name]
    printed, requests, expected_errors = {}, {}, {}
    for k, options in enumerate(grid):
        out, error = cli_prompt(capsys, task_name, style, options)
        try:  # inference builds the request through the same Task.request
            requests[k] = task.request(**options)
            requests[k].prompt(style)
            assert error is None, f"qaudio prompt refused what inference accepts: {options}: {error}"
            printed[k] = out
        except RequestError as e:
            assert error == str(e), f"{options}: qaudio prompt said {error!r}, inference {e!s}"
            expected_errors[k] = str(e)
            requests.pop(k, None)
    assert printed, "no valid combination: the grid tests nothing"

    # Inference: every valid request in one Pipeline.run; the stand-in answers with the prompt it got.
    pipeline = Pipeline(EchoLM(style), batch_size=7, detect_no_speech=False)
    keys = sorted(printed)
    results = pipeline.run([audio] * len(keys), [requests[k] for k in keys])
    for k, result in zip(keys, results):
        assert result.ok and result.raw + "\n" == printed[k], grid[k]

    # Training: the collator over the equivalent manifest examples, prompts intercepted at prepare().
    recorder = PromptRecorder()
    items, item_keys = [], []
    for k, options in enumerate(grid):
        made = training_example(task, options, audio)
        if made is None:
            continue
        example, trained_task = made
        item = Item(example, trained_task, "test")
        if k in expected_errors:
            with pytest.raises(RequestError) as refused:
                Collator(recorder, [item], style, 0, 30.0)([(0, 0)])
            assert str(refused.value) == expected_errors[k], options
            continue
        items.append(item)
        item_keys.append(k)
    assert items, "no training example: the grid tests nothing"
    Collator(recorder, items, style, 0, 30.0)([(i, i) for i in range(len(items))])
    assert [p + "\n" for p in recorder.prompts] == [printed[k] for k in item_keys]


def test_the_drift_the_issue_found_is_gone(capsys):
    # A non-speech task says <|unknown|> and answers in English whatever language is asked.
    assert cli_main(["prompt", "--task", "aac", "--audio-lang", "de"]) == 0
    assert (
        capsys.readouterr().out == "<|startofanalysis|><|unknown|><|caption|><|en|><|notimestamps|><|caption_clotho|>\n"
    )
    # Timestamps of a task that has none are refused, with inference's error.
    assert cli_main(["prompt", "--task", "aac", "--timestamps"]) == 2
    with pytest.raises(RequestError) as refused:
        registry("tasks")["aac"].request(timestamps=True)
    assert capsys.readouterr().err == f"qaudio prompt: error: {refused.value}\n"

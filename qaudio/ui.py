"""``qaudio ui MODEL``: a web page to try a model (Gradio, the ``ui`` extra).

Record or upload audio, pick a task (transcribe, translate, caption, ask a question, classify
emotion / scene / vocal sound), and see the answer, the word times as a table and over the
waveform, and the timing. Examples come from a qaudio manifest (``--examples``, default the
synthetic corpus's test split when it exists).

The server's guarantees hold here too: loopback by default (``--host`` to expose it,
``--share`` for a Gradio share link, both explicit choices), a login when ``--api-key`` is set
(user ``qaudio``, the key as password), the upload size (``--max-upload-mb``) and duration
(``--max-duration-s``) limits, bad audio answered with a clear error while the page keeps
working, and a bounded queue (``--max-queue``; the model runs one request at a time).
The same function is the page's API (``/answer``), so ``gradio_client`` drives it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .audio import AudioError, audio_duration, load_audio
from .tags import LANGUAGES

if TYPE_CHECKING:
    from gradio import Blocks
    from matplotlib.figure import Figure

    from .infer import Pipeline

TASKS = {  # what the page offers -> (Pipeline method, its fixed arguments)
    "transcribe": ("transcribe", {}),
    "translate": ("translate", {}),
    "caption": ("caption", {}),
    "ask a question": ("ask", {}),
    "emotion": ("classify", {"task": "emotion"}),
    "scene": ("classify", {"task": "scene"}),
    "vocal sound": ("classify", {"task": "vocal"}),
}
EXAMPLE_TASKS = {
    "asr": "transcribe",
    "srwt": "transcribe",
    "s2tt": "translate",
    "aac": "caption",
    "aqa": "ask a question",
    "ser": "emotion",
    "asc": "scene",
    "vsc": "vocal sound",
}
USER = "qaudio"  # the login name when --api-key is set


def answer(
    model: Pipeline,
    audio_path: str | None,
    task: str,
    to: str = "en",
    question: str = "",
    timestamps: bool = False,
    max_duration_s: float = 600.0,
) -> tuple[str, list[list], dict]:
    """One request: (answer text, word rows [word, start, end], timing). Bad input raises ValueError."""
    if not audio_path:
        raise ValueError("no audio: record or upload a clip first")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid choices: {', '.join(TASKS)}")
    try:
        duration = audio_duration(audio_path)  # from the header, before decoding
        if duration > max_duration_s:
            raise ValueError(f"audio is {duration:.1f} s long; this page accepts at most {max_duration_s:g} s")
        clip = load_audio(audio_path)
    except AudioError as e:  # name the upload, not the server's temporary path
        raise ValueError(str(e).replace(str(audio_path), Path(audio_path).name)) from None
    method, fixed = TASKS[task]
    kwargs: dict[str, Any] = dict(fixed)
    if method == "transcribe":
        kwargs["timestamps"] = bool(timestamps)
    elif method == "translate":
        kwargs["to"] = to
    elif method == "ask":
        if not question.strip():
            raise ValueError("type a question for 'ask a question'")
        kwargs["question"] = question
    result = getattr(model, method)(clip, **kwargs)
    if not result.ok:
        raise ValueError(result.error)
    rows = [[w.word, w.start, w.end] for w in result.words or []]
    return result.text, rows, result.timing


def waveform_figure(audio_path: str | None, rows: list[list]) -> Figure:
    """The waveform with each word's span shaded and labelled (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 2.4), dpi=100)
    if audio_path:
        samples = load_audio(audio_path, allow_silence=True).samples
        t = np.arange(len(samples)) / 16_000
        step = max(1, len(samples) // 8000)  # plot at most ~8000 points
        ax.plot(t[::step], samples[::step], linewidth=0.6, color="#3b6ea5")
    for k, (word, start, end) in enumerate(rows):
        ax.axvspan(start, end, color="#f0a030" if k % 2 else "#f5c56b", alpha=0.35)
        # Three staggered label rows, so short neighbouring words do not print over each other.
        ax.text(
            (start + end) / 2,
            0.97 - 0.1 * (k % 3),
            word,
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=7,
        )
    ax.set_xlabel("seconds")
    ax.set_yticks([])
    fig.tight_layout()
    plt.close(fig)
    return fig


def read_examples(manifest: str | None, per_task: int = 1) -> list[list]:
    """Page examples: [audio path, page task, to, question, timestamps] from a qaudio manifest."""
    from .data import read_manifest

    if not manifest or not Path(manifest).is_file():
        return []
    chosen: list[list] = []  # gr.Examples rows: audio, task, language, question, timestamps
    counts: dict[str, int] = {}
    for ex in read_manifest(manifest):
        task = EXAMPLE_TASKS.get(ex.task)
        if task is None or counts.get(ex.task, 0) >= per_task or not Path(ex.audio).is_file():
            continue
        counts[ex.task] = counts.get(ex.task, 0) + 1
        chosen.append(
            [ex.audio, task, ex.text_lang if ex.task == "s2tt" else "en", ex.question or "", ex.task == "srwt"]
        )
    return chosen


def build_app(model: Pipeline, max_duration_s: float = 600.0, examples: list[list] | None = None) -> Blocks:
    """The Gradio Blocks page for a loaded model."""
    import gradio as gr

    def run(audio_path, task, to, question, timestamps):
        try:
            text, rows, timing = answer(model, audio_path, task, to, question, timestamps, max_duration_s)
        except ValueError as e:
            raise gr.Error(str(e)) from None  # shown on the page; the page keeps working
        return text, rows, waveform_figure(audio_path, rows), timing

    with gr.Blocks(title="qaudio") as app:
        gr.Markdown(f"## qaudio: {Path(model.name).name}\nRecord or upload audio, pick a task, press Run.")
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="audio")
                task = gr.Dropdown(list(TASKS), value="transcribe", label="task")
                to = gr.Dropdown(list(LANGUAGES), value="en", label="translate to")
                question = gr.Textbox(label="question (for 'ask a question')")
                timestamps = gr.Checkbox(value=True, label="word timestamps (transcribe)")
                button = gr.Button("Run", variant="primary")
            with gr.Column():
                text = gr.Textbox(label="answer", lines=3)
                words = gr.Dataframe(headers=["word", "start (s)", "end (s)"], label="word times")
                plot = gr.Plot(label="words over the waveform")
                timing = gr.JSON(label="timing")
        inputs = [audio, task, to, question, timestamps]
        button.click(run, inputs, [text, words, plot, timing], api_name="answer")
        if examples:
            gr.Examples(examples, inputs, label="examples from the corpus")
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a saved model directory (or hub id)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", default="false", choices=("true", "false"), help="a public Gradio share link")
    parser.add_argument(
        "--api-key", default=None, help="require a login (user 'qaudio', this password; default: $QAUDIO_API_KEY)"
    )
    parser.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload")
    parser.add_argument("--max-duration-s", type=float, default=600.0, help="longest audio")
    parser.add_argument("--max-queue", type=int, default=64, help="waiting requests before new ones are refused")
    parser.add_argument(
        "--examples",
        default=None,
        help="a qaudio manifest whose clips are offered as examples "
        "(default: the synthetic corpus's test split, if present)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="float32 (default), bfloat16 or float16")


def launch(
    model: Pipeline,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    api_key: str | None = None,
    max_upload_mb: float = 25.0,
    max_duration_s: float = 600.0,
    max_queue: int = 64,
    examples: list[list] | None = None,
    block: bool = True,
) -> Blocks:
    """Start the page; with ``block=False`` returns the running app (its ``local_url`` is set)."""
    app = build_app(model, max_duration_s, examples)
    app.queue(max_size=max_queue, default_concurrency_limit=1)  # one model, one request at a time
    app.launch(
        server_name=host,
        server_port=port,
        share=share,
        auth=(USER, api_key) if api_key else None,
        max_file_size=int(max_upload_mb * 1024 * 1024),
        prevent_thread_lock=not block,
        show_error=True,
        quiet=not block,
    )
    return app


def main(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError("qaudio ui needs Gradio: pip install 'qaudio[ui]'") from None
    from .infer import load
    from .serve import _is_loopback
    from .training.corpus import default_root

    api_key = args.api_key or os.environ.get("QAUDIO_API_KEY") or None
    if (not _is_loopback(args.host) or args.share == "true") and not api_key:
        print(
            "qaudio ui: warning: reachable beyond this machine without --api-key: anyone who can reach it can use it",
            file=sys.stderr,
        )
    model = load(args.model, device=args.device, dtype=args.dtype)
    manifest = args.examples or str(default_root("synthetic") / "test.jsonl")
    launch(
        model,
        args.host,
        args.port,
        args.share == "true",
        api_key,
        args.max_upload_mb,
        args.max_duration_s,
        args.max_queue,
        read_examples(manifest),
    )
    return 0

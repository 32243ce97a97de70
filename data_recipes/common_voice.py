"""Mozilla Common Voice (Ardila et al., LREC 2020): read crowd-sourced speech, one locale.

Layout, as a release tarball unpacks (``cv-corpus-<version>-<date>/<locale>/``)::

    <locale>/clips/common_voice_<locale>_<n>.mp3
    <locale>/{train,dev,test,validated,other,invalidated}.tsv
    <locale>/clip_durations.tsv            (releases since 2022: clip, duration[ms])

The TSV columns changed across releases: ``client_id path sentence up_votes down_votes age
gender accent(s) locale segment``, with ``sentence_id``, ``sentence_domain`` and ``variant``
added later; rows are read by column name. Sentences hold bare ``"`` characters, so the TSV
is read without CSV quoting (as Mozilla's own tooling does).

The helpers here (:func:`cv_language`, :func:`clip_durations`, :func:`clip_path`) are also
used by the CoVoST 2 recipe, whose audio is Common Voice's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qaudio.data import Example
from qaudio.recipe import Recipe, Skipped, read_table, tag_language

HOMEPAGE = "https://commonvoice.mozilla.org/datasets"

# Common Voice locales whose language has a tag under another code. zh-HK is Cantonese
# (as is yue), which the tag set has no tag for, so it is deliberately absent.
LOCALE_LANGUAGES = {"zh-CN": "zh", "zh-TW": "zh"}


def cv_language(locale: str, corpus: str) -> str:
    """The tag-set language of a Common Voice locale (``zh-CN`` -> ``zh``), or a clear error."""
    return tag_language(LOCALE_LANGUAGES.get(locale, locale), f"{corpus} (locale {locale})")


def read_cv_tsv(path: Path, columns: tuple[str, ...] = ("path",), escapechar: str | None = None) -> Iterator[dict]:
    return read_table(path, delimiter="\t", columns=columns, quoting=False, escapechar=escapechar)


def clip_durations(locale_dir: Path) -> dict[str, float]:
    """Clip name -> seconds from ``clip_durations.tsv`` when the release has it, else {}."""
    path = locale_dir / "clip_durations.tsv"
    if not path.is_file():
        return {}
    return {row["clip"]: float(row["duration[ms]"]) / 1000 for row in read_cv_tsv(path, ("clip", "duration[ms]"))}


def clip_path(locale_dir: Path, name: str) -> Path:
    """The clip file of a TSV ``path`` value; the earliest releases list names without ``.mp3``."""
    path = locale_dir / "clips" / name
    if not path.suffix and not path.exists():
        return path.with_name(name + ".mp3")
    return path


@dataclass(frozen=True)
class CommonVoice(Recipe):
    locale: str | None = None  # the locale folder to read when --root is the release folder holding several

    name = "common_voice"
    tasks = ("asr",)
    splits = ("train", "dev", "test", "validated", "other", "invalidated")
    homepage = HOMEPAGE
    layout = (
        "ROOT/clips/*.mp3 and ROOT/<split>.tsv (columns path, sentence, client_id, locale, ...),\n"
        "where ROOT is one locale folder of a release, e.g. cv-corpus-17.0-2024-03-15/de;\n"
        "or ROOT = the release folder with --option locale=<locale>."
    )

    def locale_dir(self, root: Path) -> Path:
        """The folder holding clips/ and the TSVs: ROOT itself, or ROOT/<locale>."""
        if self.locale:
            return self.require(root / self.locale, f"locale folder {self.locale!r}:")
        if (root / "clips").is_dir():
            return root
        found = sorted(p.name for p in root.iterdir() if (p / "clips").is_dir()) if root.is_dir() else []
        if len(found) == 1:
            return root / found[0]
        if found:
            raise ValueError(
                f"{self.name}: {root} holds several locales ({', '.join(found)}); choose one with --option locale=<locale>"
            )
        raise self.layout_error(f"{root} has no clips/ folder and no locale folder with one")

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        task = self.task_or_default(task)
        locale_dir = self.locale_dir(root)
        tsv = self.require(locale_dir / f"{split}.tsv", "split file")
        durations = clip_durations(locale_dir)
        skipped = Skipped(self, split)
        for row in read_cv_tsv(tsv, ("path", "sentence")):
            # Releases before v5 have no locale column; the folder is named after the locale.
            lang = cv_language(row.get("locale") or self.locale or locale_dir.name, self.name)
            clip = clip_path(locale_dir, row["path"])
            if not row["sentence"].strip():
                skipped.add("empty sentence", clip.name)
                continue
            # clip_durations.tsv, where the release has it, saves reading every mp3 header.
            duration = skipped.duration(clip, "clip missing from clips/", durations.get(clip.name))
            if duration is None:
                continue
            meta = {k: row[k] for k in ("client_id", "gender", "age", "accents", "accent", "variant") if row.get(k)}
            yield Example(
                id=self.example_id(split, clip.stem),
                audio=str(clip),
                duration=duration,
                task=task,
                audio_lang=lang,
                text_lang=lang,
                target=row["sentence"].strip(),
                meta={"corpus": self.name, "split": split, **meta},
            )
        skipped.warn()


RECIPE = CommonVoice()

"""CoVoST 2 (Wang et al., Interspeech 2021): speech translation on Common Voice audio.

The audio and transcripts are Common Voice 4 (``cv-corpus-4-2019-12-10/<src>/``); CoVoST 2
adds translations, per language pair ``<src>_<tgt>`` (21 languages to English, English to 15),
in one of two forms, both read here:

* the released ``covost_v2.<src>_<tgt>.tsv`` (columns ``path``, ``translation``, ``split``;
  ``split`` is train, dev, test or train_covost, the last counted as train), joined on
  ``path`` with Common Voice's ``validated.tsv`` for the transcript, as CoVoST's
  ``get_covost_splits.py`` does;
* the per-split files that script writes, ``covost_v2.<src>_<tgt>.<split>.tsv`` (columns
  ``path``, ``sentence``, ``translation``, ``client_id``).

The TSVs are written by pandas with ``quoting=QUOTE_NONE, escapechar="\\"`` and are read back
the same way. Codes follow Common Voice (``zh-CN``); languages without a tag are an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qaudio.data import Example
from qaudio.recipe import Recipe, Skipped

from .common_voice import clip_durations, clip_path, cv_language, read_cv_tsv

_PAIR_FILE = re.compile(r"^covost_v2\.([A-Za-z-]+_[A-Za-z-]+)(?:\.(train|dev|test))?\.tsv$")


@dataclass(frozen=True)
class CoVoST2(Recipe):
    pair: str | None = None  # language pair <src>_<tgt>, e.g. fr_en; needed when several pairs' TSVs are present
    tsv_dir: str | None = None  # folder of the CoVoST TSVs, if not the Common Voice locale folder itself

    name = "covost2"
    tasks = ("s2tt", "asr")
    splits = ("train", "dev", "test")
    homepage = "https://github.com/facebookresearch/covost"
    layout = (
        "ROOT = the Common Voice 4 folder of the source language (cv-corpus-4-2019-12-10/<src>):\n"
        "ROOT/clips/*.mp3, ROOT/validated.tsv, and the CoVoST 2 TSV of the pair in ROOT (or --option tsv_dir):\n"
        "  covost_v2.<src>_<tgt>.tsv (path, translation, split) as released, or\n"
        "  covost_v2.<src>_<tgt>.<split>.tsv (path, sentence, translation, client_id) from get_covost_splits.py"
    )

    def _pair(self, tsv_dir: Path) -> str:
        if self.pair:
            return self.pair
        found = sorted({m.group(1) for p in tsv_dir.glob("covost_v2.*.tsv") if (m := _PAIR_FILE.match(p.name))})
        if len(found) == 1:
            return found[0]
        if found:
            raise ValueError(
                f"{self.name}: {tsv_dir} holds TSVs of several pairs ({', '.join(found)}); choose one with --option pair=<src>_<tgt>"
            )
        raise self.layout_error(f"no covost_v2.<src>_<tgt>[.<split>].tsv in {tsv_dir}")

    def _rows(self, root: Path, tsv_dir: Path, pair: str, split: str, skipped: Skipped) -> Iterator[dict]:
        """Rows with path, sentence, translation and client_id, from whichever TSV form is there."""
        split_tsv = tsv_dir / f"covost_v2.{pair}.{split}.tsv"
        if split_tsv.is_file():
            yield from read_cv_tsv(split_tsv, ("path", "sentence", "translation"), escapechar="\\")
            return
        full_tsv = tsv_dir / f"covost_v2.{pair}.tsv"
        if not full_tsv.is_file():
            raise self.layout_error(f"{tsv_dir} has neither {full_tsv.name} nor {split_tsv.name}")
        wanted = {split, f"{split}_covost"} if split == "train" else {split}
        rows = [
            r for r in read_cv_tsv(full_tsv, ("path", "translation", "split"), escapechar="\\") if r["split"] in wanted
        ]
        if rows and "sentence" in rows[0]:
            yield from rows
            return
        validated = {
            r["path"]: r
            for r in read_cv_tsv(self.require(root / "validated.tsv", "Common Voice file"), ("path", "sentence"))
        }
        for row in rows:
            cv = validated.get(row["path"])
            if cv is None:  # get_covost_splits.py's inner join drops these too
                skipped.add("path not in Common Voice validated.tsv", row["path"])
                continue
            yield {**row, "sentence": cv["sentence"], "client_id": cv.get("client_id", "")}

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        task = self.task_or_default(task)
        self.require(root / "clips", "Common Voice clips folder")
        tsv_dir = self.require(Path(self.tsv_dir).expanduser(), "tsv_dir") if self.tsv_dir else root
        pair = self._pair(tsv_dir)
        src_code, _, tgt_code = pair.partition("_")
        src, tgt = cv_language(src_code, self.name), cv_language(tgt_code, self.name)
        durations = clip_durations(root)
        skipped = Skipped(self, split)
        for row in self._rows(root, tsv_dir, pair, split, skipped):
            clip = clip_path(root, row["path"])
            duration = skipped.duration(clip, "clip missing from clips/", durations.get(clip.name))
            if duration is None:
                continue
            translation, sentence = row["translation"].strip(), row["sentence"].strip()
            other = {"transcript": sentence} if task == "s2tt" else {"translation": translation}
            yield Example(
                id=self.example_id(split, f"{pair}/{clip.stem}"),
                audio=str(clip),
                duration=duration,
                task=task,
                audio_lang=src,
                text_lang=tgt if task == "s2tt" else src,
                target=translation if task == "s2tt" else sentence,
                meta={
                    "corpus": self.name,
                    "split": split,
                    "pair": pair,
                    "client_id": row.get("client_id", ""),
                    **other,
                },
            )
        skipped.warn()


RECIPE = CoVoST2()

"""Captions and questions for sound-event clips, written from the clip's segments.

Captioning: five reference captions per clip, as in Clotho (Drossos et al., ICASSP 2020),
each written by a different template with varied wording (synonyms, which attributes are
mentioned, noun phrase or clause), all true of the clip: the kinds in order, their counts,
pitch, length and loudness.

Question answering: questions of the types in Clotho-AQA (Lipping et al., "Clotho-AQA: A
Crowdsourced Dataset for Audio Question Answering", EUSIPCO 2022): yes/no questions
(answer "yes" or "no") and open questions with one-word answers (a number word, a kind of
sound, high/low, rising/falling, loud/quiet). Questions name a sound by its canonical noun.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from .sounds import KINDS, Segment

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")
TIMES = {1: "once", 2: "twice"}  # "three times" otherwise

# kind -> (singular, plural) synonyms; the first is the canonical noun used in questions
NOUNS: dict[str, tuple[tuple[str, str], ...]] = {
    "beep": (("beep", "beeps"), ("tone", "tones")),
    "chirp": (("chirp", "chirps"), ("whistle", "whistles")),
    "click": (("click", "clicks"),),
    "knock": (("knock", "knocks"), ("tap", "taps")),
    "bell": (("bell", "bells"), ("chime", "chimes")),
    "hiss": (("hiss", "hisses"), ("burst of noise", "bursts of noise")),
    "hum": (("hum", "hums"), ("buzz", "buzzes")),
}
# kind -> (verb, sources that make the sound) for "a loud machine beeps three times" clauses;
# "someone"/"something" take no modifiers
CLAUSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "beep": ("beeps", ("machine", "device", "something")),
    "chirp": ("chirps", ("whistle", "bird")),
    "click": ("clicks", ("switch", "something")),
    "knock": ("knocks", ("someone",)),
    "bell": ("rings", ("bell", "chime")),
    "hiss": ("hisses", ("valve", "something")),
    "hum": ("hums", ("motor", "machine")),
}
MODIFIERS = {
    "high": ("high", "high-pitched"),
    "low": ("low", "low-pitched", "deep"),
    "rising": ("rising", "upward"),
    "falling": ("falling", "downward"),
    "short": ("short", "brief"),
    "long": ("long", "sustained"),
    True: ("loud",),
    False: ("quiet", "soft", "faint"),
}
assert set(NOUNS) == set(KINDS) == set(CLAUSES)


T = TypeVar("T")


def _pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    return items[int(rng.integers(len(items)))]


def _times(n: int) -> str:
    return TIMES.get(n, f"{NUMBER_WORDS[n]} times")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(seg: Segment, rng: np.random.Generator) -> str:
    """``three short high-pitched beeps`` / ``a faint rising chirp`` / ``a series of four clicks``."""
    singular, plural = _pick(rng, NOUNS[seg.kind])
    mods = []
    if rng.random() < 0.6:
        mods.append(_pick(rng, MODIFIERS[seg.loud]))
    for attr in (seg.length, seg.pitch):
        if attr is not None:
            mods.append(_pick(rng, MODIFIERS[attr]))
    head = " ".join([*mods, plural if seg.count > 1 else singular])
    if seg.count == 1:
        return f"{_article(head)} {head}"
    if seg.count >= 3 and rng.random() < 0.3:
        return f"a series of {NUMBER_WORDS[seg.count]} {head}"
    return f"{NUMBER_WORDS[seg.count]} {head}"


def clause(seg: Segment, rng: np.random.Generator) -> str:
    """``a loud machine beeps three times`` / ``someone knocks twice`` / ``a low bell rings once``."""
    verb, sources = CLAUSES[seg.kind]
    source = _pick(rng, sources)
    if source in ("someone", "something"):
        subject = source
    else:
        mods = [_pick(rng, MODIFIERS[seg.loud]), *(_pick(rng, MODIFIERS[a]) for a in (seg.pitch,) if a is not None)]
        head = " ".join([*mods, source])
        subject = f"{_article(head)} {head}"
    return f"{subject} {verb}" + ("" if seg.kind == "hum" else f" {_times(seg.count)}")  # a hum is one sound


_ONE = (
    "{a} can be heard",
    "there {is_a} {a}",
    "you can hear {a}",
    "{a} against a quiet background",
    "{a} in an otherwise silent recording",
    "{A}",
)
_TWO = (
    "{a} followed by {b}",
    "first {a} and then {b}",
    "{a} {is_a} heard before {b}",
    "{b} {comes_b} after {a}",
    "{a}, then {b}",
    "{A} and then {b}",
)
_THREE = (
    "{a}, then {b} and finally {c}",
    "first {a}, next {b}, and last {c}",
    "{a} followed by {b} and {c}",
    "{a} {is_a} heard, then {b}, then {c}",
    "{A}, then {b}, and then {c}",
)
_TEMPLATES = {1: _ONE, 2: _TWO, 3: _THREE}


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def captions(segments: list[Segment], rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` distinct captions of the clip, each from a different template where possible."""
    templates = list(_TEMPLATES[len(segments)])
    order = rng.permutation(len(templates))
    out: list[str] = []
    for attempt in range(50 * n):
        template = templates[order[attempt % len(templates)]]
        slots = {}
        for name, seg in zip("abc", segments, strict=False):  # one to three segments: a, b, c
            slots[name] = noun_phrase(seg, rng)
        slots["A"] = clause(segments[0], rng)  # "{A}": the first segment as a clause
        slots["is_a"] = "are" if segments[0].count > 1 else "is"  # verb agreement
        slots["comes_b"] = "come" if len(segments) > 1 and segments[1].count > 1 else "comes"
        text = _sentence(template.format(**slots))
        if text not in out:
            out.append(text)
        if len(out) == n:
            return out
    raise RuntimeError(f"could not write {n} distinct captions for {segments}")


# ---- Questions ------------------------------------------------------------------------------

Question = tuple[str, str, str]  # (question, answer, question type)


def _noun(kind: str) -> str:
    return NOUNS[kind][0][0]


def _q_how_many_sounds(segs, rng, absent):
    q = _pick(
        rng,
        (
            "how many different sounds are there?",
            "how many distinct sounds can be heard?",
            "how many kinds of sound are in the recording?",
        ),
    )
    return q, NUMBER_WORDS[len(segs)]


def _q_count(segs, rng, absent):
    seg = _pick(rng, segs)
    noun, plural = _noun(seg.kind), NOUNS[seg.kind][0][1]
    q = _pick(
        rng,
        (f"how many times does the {noun} sound?", f"how many {plural} are there?", f"how many {plural} can you hear?"),
    )
    return q, NUMBER_WORDS[seg.count]


def _q_first(segs, rng, absent):
    q = _pick(rng, ("which sound comes first?", "what is the first sound?", "what do you hear first?"))
    return q, _noun(segs[0].kind)


def _q_last(segs, rng, absent):
    q = _pick(rng, ("which sound comes last?", "what is the last sound?", "what do you hear last?"))
    return q, _noun(segs[-1].kind)


def _q_pitch(segs, rng, absent):
    seg = _pick(rng, [s for s in segs if s.pitch in ("high", "low")])
    noun = _noun(seg.kind)
    return _pick(rng, (f"is the {noun} high or low?", f"is the {noun} high-pitched or low-pitched?")), seg.pitch


def _q_direction(segs, rng, absent):
    seg = next(s for s in segs if s.kind == "chirp")
    return _pick(
        rng, ("is the chirp rising or falling?", "does the chirp go up or down in pitch? answer rising or falling.")
    ), seg.pitch


def _q_loudness(segs, rng, absent):
    seg = _pick(rng, segs)
    noun = _noun(seg.kind)
    return _pick(
        rng, (f"is the {noun} loud or quiet?", f"is the {noun} loud or soft? answer loud or quiet.")
    ), "loud" if seg.loud else "quiet"


def _q_present(segs, rng, absent):
    present = rng.random() < 0.5
    kind = _pick(rng, segs).kind if present else _pick(rng, absent)
    noun = _noun(kind)
    q = _pick(
        rng, (f"is there a {noun} in the recording?", f"can you hear a {noun}?", f"does the audio contain a {noun}?")
    )
    return q, "yes" if present else "no"


def _q_order(segs, rng, absent):
    i, j = sorted(rng.choice(len(segs), size=2, replace=False))
    a, b = (segs[i], segs[j]) if rng.random() < 0.5 else (segs[j], segs[i])
    q = _pick(
        rng,
        (
            f"does the {_noun(a.kind)} come before the {_noun(b.kind)}?",
            f"is the {_noun(a.kind)} heard before the {_noun(b.kind)}?",
        ),
    )
    return q, "yes" if a.start < b.start else "no"


def _q_exact_count(segs, rng, absent):
    seg = _pick(rng, segs)
    n = seg.count if rng.random() < 0.5 else max(1, seg.count + int(_pick(rng, (-2, -1, 1, 2))))
    return f"does the {_noun(seg.kind)} sound exactly {_times(n)}?", "yes" if n == seg.count else "no"


def _q_is_high(segs, rng, absent):
    seg = _pick(rng, [s for s in segs if s.pitch in ("high", "low")])
    asked = _pick(rng, ("high", "low"))
    return f"is the {_noun(seg.kind)} {asked}-pitched?", "yes" if seg.pitch == asked else "no"


# type -> (applies to the clip?, writer)
QUESTION_TYPES: dict[str, tuple[Callable[[list[Segment]], bool], Callable]] = {
    "how_many_sounds": (lambda s: True, _q_how_many_sounds),
    "count": (lambda s: True, _q_count),
    "first": (lambda s: len(s) >= 2, _q_first),
    "last": (lambda s: len(s) >= 2, _q_last),
    "pitch": (lambda s: any(x.pitch in ("high", "low") for x in s), _q_pitch),
    "direction": (lambda s: any(x.kind == "chirp" for x in s), _q_direction),
    "loudness": (lambda s: True, _q_loudness),
    "yn_present": (lambda s: True, _q_present),
    "yn_order": (lambda s: len(s) >= 2, _q_order),
    "yn_count": (lambda s: True, _q_exact_count),
    "yn_pitch": (lambda s: any(x.pitch in ("high", "low") for x in s), _q_is_high),
}


def questions(segments: list[Segment], rng: np.random.Generator, n: int = 2) -> list[Question]:
    """``n`` questions of distinct types that apply to the clip, with their answers."""
    absent = [k for k in KINDS if k not in {s.kind for s in segments}]
    types = [t for t, (applies, _) in QUESTION_TYPES.items() if applies(segments)]
    chosen = rng.choice(types, size=min(n, len(types)), replace=False)
    out = []
    for t in chosen:
        q, a = QUESTION_TYPES[str(t)][1](segments, rng, absent)
        out.append((q[0].upper() + q[1:], a, str(t)))
    return out

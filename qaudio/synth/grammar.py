"""The sentence grammar of the synthetic corpus: eight templates, realized in en, de and fr.

A sentence is a template plus its slot values (lexicon keys); each language realizes it with
its own word order, agreement and articles, so every sentence has an exact translation in the
two other languages. The same slots always give the same texts, and a sentence's id is its
template and slots, so splits can be checked for shared sentences by id or by text.

Two renderings of each text: ``written`` (sentence case, German nouns capitalized, final
punctuation: the target of speech translation) and ``spoken`` (lower case, no punctuation:
the ASR transcript, Qwen-Audio's ``<|wo_itn|>`` form). They have the same words in the same
order, so word timings of one apply to the other.

The grammar follows the measured demo recipe in shared/OFFLINE.md: a few hundred English
words, a handful of templates, clips of 2-3 s.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .lexicon import (
    ADJECTIVES,
    COUNTS,
    NOUNS,
    NUMBERS,
    PLACES,
    PREPOSITIONS,
    VERBS_PAST,
    VERBS_PRESENT,
    Adjective,
    Noun,
    Phrase,
)

LANGS = ("en", "de", "fr")

# ---- German noun phrases: definite article + weak adjective, or number + strong adjective ----

_DE_ARTICLE = {
    "nom": {"m": "der", "f": "die", "n": "das"},
    "acc": {"m": "den", "f": "die", "n": "das"},
    "dat": {"m": "dem", "f": "der", "n": "dem"},
}


def _de_weak_ending(case: str, gender: str) -> str:
    # After the definite article: -e in the nominative and in the feminine/neuter accusative,
    # -en everywhere else (Duden, weak declension).
    if case == "nom" or (case == "acc" and gender != "m"):
        return "e"
    return "en"


def de_np(noun: Noun, case: str, adj: Adjective | None = None) -> str:
    """``den roten Apfel``: definite singular noun phrase in ``case`` (nom, acc, dat)."""
    words = [_DE_ARTICLE[case][noun.de_g]]
    if adj is not None:
        words.append(adj.de_stem + _de_weak_ending(case, noun.de_g))
    words.append(noun.de)
    return " ".join(words)


def de_counted(number: Phrase, noun: Noun, adj: Adjective | None = None) -> str:
    """``drei rote Hunde``: a number with no article takes the strong plural ending -e."""
    return " ".join([number.de, *([adj.de_stem + "e"] if adj else []), noun.de_pl])


# ---- French noun phrases: article elision, de + article contraction, adjective position ----

_VOWELS = tuple("aeiouyéèêàâîôûœh")  # every h-initial word in the lexicon has a mute h


def _fr_after_det(noun: Noun, adj: Adjective | None, plural: bool) -> list[str]:
    n = noun.fr_pl if plural else noun.fr
    if adj is None:
        return [n]
    a = adj.fr_form(noun.fr_g, plural)
    return [a, n] if adj.fr_before else [n, a]


def fr_np(noun: Noun, adj: Adjective | None = None, de: bool = False) -> str:
    """``la pomme rouge`` / ``l'oiseau`` / (with ``de``) ``du chien``, ``de l'arbre``."""
    rest = _fr_after_det(noun, adj, plural=False)
    if rest[0].startswith(_VOWELS):
        return ("de l'" if de else "l'") + " ".join(rest)
    article = "le" if noun.fr_g == "m" else "la"
    if de:
        article = "du" if article == "le" else "de la"
    return f"{article} {' '.join(rest)}"


def fr_counted(number: Phrase, noun: Noun, adj: Adjective | None = None) -> str:
    """``trois chiens rouges`` / ``deux petits chats``."""
    return " ".join([number.fr, *_fr_after_det(noun, adj, plural=True)])


def fr_prep_np(prep: Phrase, noun: Noun, adj: Adjective | None = None) -> str:
    """A preposition and a noun phrase, contracting ``à côté de le`` to ``à côté du``."""
    if prep.fr.endswith(" de"):
        return f"{prep.fr[:-3]} {fr_np(noun, adj, de=True)}"
    return f"{prep.fr} {fr_np(noun, adj)}"


def en_np(noun: Noun, adj: Adjective | None = None) -> str:
    return " ".join(["the", *([adj.en] if adj else []), noun.en])


def en_counted(number: Phrase, noun: Noun, adj: Adjective | None = None) -> str:
    return " ".join([number.en, *([adj.en] if adj else []), noun.en_pl])


# ---- Templates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sentence:
    """One sentence of the grammar in all three languages."""

    template: str
    slots: tuple[str, ...]  # lexicon keys of the slot values, in the template's order
    written: dict[str, str] = field(compare=False)  # lang -> text as written

    @property
    def id(self) -> str:
        return f"{self.template}:{'.'.join(self.slots)}"

    def spoken(self, lang: str) -> str:
        return spoken_form(self.written[lang])


def spoken_form(text: str) -> str:
    """Lower case, punctuation stripped from the ends of words: the ASR transcript."""
    words = (w.strip(string.punctuation + "«»¿¡") for w in text.split())
    return " ".join(w.lower() for w in words if w)


def _written(en: str, de: str, fr: str, end: str = ".") -> dict[str, str]:
    cap = lambda s: s[0].upper() + s[1:] + end  # noqa: E731 - sentence case, keeps German nouns
    return {"en": cap(en), "de": cap(de), "fr": cap(fr)}


def _nouns(*classes: str) -> list[Noun]:
    return [n for c in classes for n in NOUNS[c]]


def _adjs_for(noun: Noun) -> list[Adjective]:
    return [a for a in ADJECTIVES if noun.cls in a.classes]


def _pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    return items[int(rng.integers(len(items)))]


T = TypeVar("T")

_THINGS = ("obj", "food", "animal")
_BY_KEY: dict[str, dict[str, Any]] = {  # slot kind -> key -> a lexicon entry (Noun, Adjective ...)
    "noun": {n.key: n for c in NOUNS.values() for n in c},
    "adj": {a.key: a for a in ADJECTIVES},
    "verb": {v.key: v for v in VERBS_PRESENT},
    "past": {v.key: v for v in VERBS_PAST},
    "place": {p.key: p for p in PLACES},
    "prep": {p.key: p for p in PREPOSITIONS},
    "num": {p.key: p for p in NUMBERS},
}


@dataclass(frozen=True)
class Template:
    """A template: which slots it draws and how each language realizes them."""

    name: str
    slot_kinds: tuple[str, ...]  # kind of each slot (a _BY_KEY table, or "-" for an empty one)
    sample: Callable[[np.random.Generator], tuple[str, ...]]  # draws slot keys
    realize: Callable[..., dict[str, str]]  # slot values -> written texts

    def sentence(self, slots: tuple[str, ...]) -> Sentence:
        values = [None if k == "-" else _BY_KEY[kind][k] for kind, k in zip(self.slot_kinds, slots, strict=True)]
        return Sentence(self.name, tuple(slots), self.realize(*values))


def _key(x: Any) -> str:
    return "-" if x is None else x.key


def _sample_thing(
    rng: np.random.Generator, classes: tuple[str, ...] = _THINGS, adj_p: float = 1.0
) -> tuple[Noun, Adjective | None]:
    noun = _pick(rng, _nouns(*classes))
    adj = _pick(rng, _adjs_for(noun)) if rng.random() < adj_p else None
    return noun, adj


def _s_loc(rng):
    noun, adj = _sample_thing(rng)
    return _key(adj), noun.key, _pick(rng, PREPOSITIONS).key, _pick(rng, NOUNS["surface"]).key


def _r_loc(adj, noun, prep, surface):
    # the red cat is under the table / die rote Katze ist unter dem Tisch / le chat rouge est sous la table
    return _written(
        f"{en_np(noun, adj)} is {prep.en} {en_np(surface)}",
        f"{de_np(noun, 'nom', adj)} ist {prep.de} {de_np(surface, 'dat')}",
        f"{fr_np(noun, adj)} est {fr_prep_np(prep, surface)}",
    )


def _s_count(rng):
    noun, adj = _sample_thing(rng, adj_p=0.5)
    return _pick(rng, COUNTS).key, _key(adj), noun.key, _pick(rng, PLACES).key


def _r_count(num, adj, noun, place):
    return _written(
        f"{en_counted(num, noun, adj)} are {place.en}",
        f"{de_counted(num, noun, adj)} sind {place.de}",
        f"{fr_counted(num, noun, adj)} sont {place.fr}",
    )


def _s_action(rng):
    verb = _pick(rng, VERBS_PRESENT)
    noun, adj = _sample_thing(rng, tuple(sorted(verb.classes)))
    return _pick(rng, NOUNS["person"]).key, verb.key, _key(adj), noun.key


def _r_action(person, verb, adj, noun):
    return _written(
        f"{en_np(person)} {verb.en} {en_np(noun, adj)}",
        f"{de_np(person, 'nom')} {verb.de} {de_np(noun, 'acc', adj)}",
        f"{fr_np(person)} {verb.fr} {fr_np(noun, adj)}",
    )


def _s_past(rng):
    verb = _pick(rng, VERBS_PAST)
    noun = _pick(rng, _nouns(*sorted(verb.classes)))
    return _pick(rng, NOUNS["person"]).key, verb.key, _pick(rng, COUNTS).key, noun.key, _pick(rng, PLACES).key


def _r_past(person, verb, num, noun, place):
    # German perfect: the participle goes to the end of the clause
    return _written(
        f"yesterday {en_np(person)} {verb.en} {en_counted(num, noun)} {place.en}",
        f"gestern hat {de_np(person, 'nom')} {de_counted(num, noun)} {place.de} {verb.de}",
        f"hier {fr_np(person)} a {verb.fr} {fr_counted(num, noun)} {place.fr}",
    )


def _s_where(rng):
    noun, adj = _sample_thing(rng)
    return _key(adj), noun.key


def _r_where(adj, noun):
    return _written(
        f"where is {en_np(noun, adj)}", f"wo ist {de_np(noun, 'nom', adj)}", f"où est {fr_np(noun, adj)}", end="?"
    )


def _s_howmany(rng):
    return _pick(rng, _nouns(*_THINGS)).key, _pick(rng, PLACES).key


def _r_howmany(noun, place):
    return _written(
        f"how many {noun.en_pl} are {place.en}",
        f"wie viele {noun.de_pl} sind {place.de}",
        f"combien de {noun.fr_pl} sont {place.fr}",
        end="?",
    )


def _s_request(rng):
    noun, adj = _sample_thing(rng, ("obj", "food"))
    return _key(adj), noun.key, _pick(rng, PREPOSITIONS).key, _pick(rng, NOUNS["surface"]).key


def _r_request(adj, noun, prep, surface):
    # German: where something is put takes the accusative (auf den Tisch)
    return _written(
        f"please put {en_np(noun, adj)} {prep.en} {en_np(surface)}",
        f"bitte legen Sie {de_np(noun, 'acc', adj)} {prep.de} {de_np(surface, 'acc')}",
        f"posez {fr_np(noun, adj)} {fr_prep_np(prep, surface)} s'il vous plaît",
    )


def _s_price(rng):
    noun, adj = _sample_thing(rng, ("obj", "food"))
    return _key(adj), noun.key, _pick(rng, NUMBERS).key


def _r_price(adj, noun, num):
    return _written(
        f"{en_np(noun, adj)} costs {num.en} euros",
        f"{de_np(noun, 'nom', adj)} kostet {num.de} Euro",
        f"{fr_np(noun, adj)} coûte {num.fr} euros",
    )


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("loc", ("adj", "noun", "prep", "noun"), _s_loc, _r_loc),
        Template("count", ("num", "adj", "noun", "place"), _s_count, _r_count),
        Template("action", ("noun", "verb", "adj", "noun"), _s_action, _r_action),
        Template("past", ("noun", "past", "num", "noun", "place"), _s_past, _r_past),
        Template("where", ("adj", "noun"), _s_where, _r_where),
        Template("howmany", ("noun", "place"), _s_howmany, _r_howmany),
        Template("request", ("adj", "noun", "prep", "noun"), _s_request, _r_request),
        Template("price", ("adj", "noun", "num"), _s_price, _r_price),
    )
}


def sentence_from_id(sentence_id: str) -> Sentence:
    """Rebuild a sentence from its id (``template:slot.slot...``)."""
    name, _, slots = sentence_id.partition(":")
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r} in sentence id {sentence_id!r}; templates: {', '.join(TEMPLATES)}")
    return TEMPLATES[name].sentence(tuple(slots.split(".")))


def sample_sentence(rng: np.random.Generator) -> Sentence:
    template = TEMPLATES[_pick(rng, list(TEMPLATES))]
    return template.sentence(template.sample(rng))


def sentence_pools(seed: int, counts: dict[str, int], max_tries_factor: int = 50) -> dict[str, list[Sentence]]:
    """Disjoint pools of distinct sentences, one per split, in the order of ``counts``.

    No text in any language is shared between (or within) pools. Pools are drawn in the
    given order from one generator, so with test and dev first their sentences do not
    depend on the size of train.
    """
    rng = np.random.default_rng([seed, 0x5E17])
    seen: set[str] = set()
    pools: dict[str, list[Sentence]] = {}
    for split, n in counts.items():
        pool: list[Sentence] = []
        tries = 0
        while len(pool) < n:
            tries += 1
            if tries > max_tries_factor * max(n, 1) + 1000:
                raise ValueError(f"the grammar ran out of new sentences for split {split!r} after {len(pool)} of {n}")
            s = sample_sentence(rng)
            texts = [f"{lang}:{s.spoken(lang)}" for lang in LANGS]
            if any(t in seen for t in texts):
                continue
            seen.update(texts)
            pool.append(s)
        pools[split] = pool
    return pools

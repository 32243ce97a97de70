"""The aligned grammar: exact translations, a one-to-one lexicon, disjoint sentence pools."""

import numpy as np
import pytest

from qaudio.synth.grammar import LANGS, TEMPLATES, sample_sentence, sentence_from_id, sentence_pools, spoken_form
from qaudio.synth.lexicon import ADJECTIVES, NOUNS, PLACES, VERBS_PAST, VERBS_PRESENT

# One sentence per template, checked by hand against German and French grammar: dative after
# a location preposition, accusative after a verb of putting, weak/strong adjective endings,
# French elision (l'), contraction (du), adjective position (petit before, rouge after).
GOLDEN = {
    "loc:hungry.bird.infront.shelf": (
        "The hungry bird is in front of the shelf.",
        "Der hungrige Vogel ist vor dem Regal.",
        "L'oiseau affamé est devant l'étagère.",
    ),
    "count:3.small.cat.kitchen": (
        "Three small cats are in the kitchen.",
        "Drei kleine Katzen sind in der Küche.",
        "Trois petits chats sont dans la cuisine.",
    ),
    "action:teacher.buy.red.apple": (
        "The teacher buys the red apple.",
        "Der Lehrer kauft den roten Apfel.",
        "Le professeur achète la pomme rouge.",
    ),
    "past:man.feed.5.horse.harbor": (
        "Yesterday the man fed five horses at the harbor.",
        "Gestern hat der Mann fünf Pferde im Hafen gefüttert.",
        "Hier l'homme a nourri cinq chevaux au port.",
    ),
    "where:white.egg": ("Where is the white egg?", "Wo ist das weiße Ei?", "Où est l'œuf blanc?"),
    "howmany:mouse.church": (
        "How many mice are in the church?",
        "Wie viele Mäuse sind in der Kirche?",
        "Combien de souris sont dans l'église?",
    ),
    "request:expensive.glass.nextto.sofa": (
        "Please put the expensive glass next to the sofa.",
        "Bitte legen Sie das teure Glas neben das Sofa.",
        "Posez le verre cher à côté du canapé s'il vous plaît.",
    ),
    "price:-.clock.17": (
        "The clock costs seventeen euros.",
        "Die Uhr kostet siebzehn Euro.",
        "L'horloge coûte dix-sept euros.",
    ),
}


@pytest.mark.parametrize("sentence_id", list(GOLDEN))
def test_each_template_realizes_exact_translations(sentence_id):
    s = sentence_from_id(sentence_id)
    assert tuple(s.written[lang] for lang in LANGS) == GOLDEN[sentence_id]
    assert s.id == sentence_id


def test_golden_covers_every_template():
    assert {i.split(":")[0] for i in GOLDEN} == set(TEMPLATES)


def test_spoken_form_is_lower_case_without_punctuation_but_keeps_word_inner_marks():
    assert (
        spoken_form("Posez l'orange brune à côté du canapé s'il vous plaît.")
        == "posez l'orange brune à côté du canapé s'il vous plaît"
    )
    assert spoken_form("Wo ist das weiße Ei?") == "wo ist das weiße ei"
    assert spoken_form("Dix-sept euros.") == "dix-sept euros"


def _one_to_one(pairs):
    forward, backward = {}, {}
    for a, b in pairs:
        forward.setdefault(a, set()).add(b)
        backward.setdefault(b, set()).add(a)
    return [a for a, bs in forward.items() if len(bs) > 1] + [b for b, as_ in backward.items() if len(as_) > 1]


def test_lexicon_is_one_to_one_per_language_so_back_translation_is_exact():
    nouns = [n for group in NOUNS.values() for n in group]
    for lang_a, lang_b in (("en", "de"), ("en", "fr")):
        assert _one_to_one((getattr(n, lang_a), getattr(n, lang_b)) for n in nouns) == []
        assert (
            _one_to_one((getattr(n, lang_a + "_pl"), getattr(n, lang_b + "_pl")) for n in nouns if n.cls != "person")
            == []
        )
        assert _one_to_one((v.en, getattr(v, lang_b)) for v in VERBS_PRESENT) == []
        assert _one_to_one((v.en, getattr(v, lang_b)) for v in VERBS_PAST) == []
        assert _one_to_one((p.en, getattr(p, lang_b)) for p in PLACES) == []
    assert _one_to_one((a.en, a.de_stem) for a in ADJECTIVES) == []
    assert _one_to_one((a.en, a.fr[0]) for a in ADJECTIVES) == []


def test_written_and_spoken_forms_have_the_same_words():
    rng = np.random.default_rng(3)
    for _ in range(300):
        s = sample_sentence(rng)
        for lang in LANGS:
            written = s.written[lang]
            assert written[0].isupper() and written[-1] in ".?"
            assert len(written.split()) == len(s.spoken(lang).split())


def test_english_vocabulary_is_a_few_hundred_words():
    rng = np.random.default_rng(0)
    vocab = set()
    for _ in range(5000):
        vocab.update(sample_sentence(rng).spoken("en").split())
    assert 200 <= len(vocab) <= 400


def test_pools_are_disjoint_in_every_language_and_reproducible():
    pools = sentence_pools(7, {"test": 200, "dev": 200, "train": 2000})
    assert [len(p) for p in pools.values()] == [200, 200, 2000]
    for lang in LANGS:
        texts = [s.spoken(lang) for p in pools.values() for s in p]
        assert len(texts) == len(set(texts))
    again = sentence_pools(7, {"test": 200, "dev": 200, "train": 10})
    assert [s.id for s in again["test"]] == [s.id for s in pools["test"]]  # test does not depend on train's size
    assert [s.id for s in sentence_pools(8, {"test": 200})["test"]] != [s.id for s in pools["test"]]


def test_unknown_template_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown template 'nope'"):
        sentence_from_id("nope:a.b")

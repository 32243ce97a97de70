"""The built-in corpus recipes, registered in one place. A user's corpus is one file with a
``RECIPE`` object, passed by path wherever a recipe name is accepted (see qaudio/recipe.py)."""

from . import (
    aishell1,
    audiocaps,
    clotho,
    clotho_aqa,
    cochlscene,
    common_voice,
    covost2,
    hf,
    librispeech,
    manifest,
    meld,
    nsynth,
    synthetic,
    vocalsound,
)

RECIPES = {
    m.RECIPE.name: m.RECIPE
    for m in (
        librispeech,
        common_voice,
        aishell1,
        covost2,
        clotho,
        audiocaps,
        clotho_aqa,
        meld,
        cochlscene,
        vocalsound,
        nsynth,
        hf,
        manifest,
        synthetic,
    )
}

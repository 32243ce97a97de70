"""The built-in corpus recipes, registered in one place."""

RECIPES = {}

"""The built-in evaluation suites, registered in one place."""

SUITES = {}

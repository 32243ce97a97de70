"""MkDocs hook: the configuration and command-line references, written at build time.

A page holds a marker line; the hook replaces it with text computed from the code, so the
reference cannot drift from it:

- ``<!-- config: qaudio.training.config:TrainConfig command=train -->`` becomes a table of the
  dataclass's fields (flag, type, default, help). The help is the field's ``help`` metadata
  or, for plain dataclasses, the comment at the end of the field's line; the flag is read
  from the named ``qaudio`` subcommand's parser (the field whose ``dest`` it is), never
  guessed from the name.
- ``<!-- cli: train -->`` becomes the subcommand's ``--help`` text.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import html
import importlib
import inspect
import io
import re
import textwrap
import tokenize
from typing import Any

MARKER = re.compile(r"^<!-- (config|cli): (.+?) -->$", re.MULTILINE)


def command_parser(command: str) -> argparse.ArgumentParser:
    """The parser ``qaudio COMMAND`` uses (built the way ``qaudio.cli.main`` builds it)."""
    from qaudio.cli import COMMANDS

    if command not in COMMANDS:
        raise ValueError(f"unknown qaudio command {command!r}; valid: {', '.join(COMMANDS)}")
    module_name, help_text = COMMANDS[command]
    parser = argparse.ArgumentParser(prog=f"qaudio {command}", description=help_text)
    importlib.import_module(module_name).add_arguments(parser)
    return parser


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from the ``name: type = value  # comment`` lines of a dataclass."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {
        t.start[0]: t.string.lstrip("# ").strip()
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type == tokenize.COMMENT
    }
    names = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            # a one-line field carries its comment on its last line
            names[node.target.id] = comments.get(node.end_lineno, "")
    return names


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        return f"{type(value).__name__}()" if dataclasses.is_dataclass(value) else value
    return "required"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _prose(text: str) -> str:
    """Help text as literal Markdown: brackets are not links, angle brackets not HTML."""
    text = html.escape(text, quote=False)
    return _cell(re.sub(r"([\[\]*_`])", r"\\\1", text))


def config_table(target: str, command: str | None = None) -> str:
    """A Markdown table of a config dataclass ``module:Class``, with flags from ``command``."""
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{target} is not a dataclass")
    flags: dict[str, str] = {}
    if command:
        for action in command_parser(command)._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                flags.setdefault(action.dest, action.option_strings[0])
    comments = field_comments(cls)
    rows = ["| field | flag | type | default | help |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help") or comments.get(f.name, "")
        flag = f"`{flags[f.name]}`" if f.name in flags else ""
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append(
            f"| `{f.name}` | {flag} | {_prose(str(type_name))} | `{_cell(repr(_default(f)))}` | {_prose(help_text)} |"
        )
    return "\n".join(rows)


def cli_help(command: str) -> str:
    parser = command_parser(command)
    # a fixed width, so the page does not depend on the terminal that built it
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=100)
    return "```text\n" + parser.format_help().rstrip() + "\n```"


def render(markdown: str) -> str:
    def replace(match: re.Match) -> str:
        kind, args = match.group(1), match.group(2).split()
        if kind == "cli":
            return cli_help(args[0])
        options = dict(a.split("=", 1) for a in args[1:])
        return config_table(args[0], options.get("command"))

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:  # MkDocs hook
    return render(markdown)

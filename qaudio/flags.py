"""Command-line flags from a config dataclass: the dataclass is the CLI (litgpt's habit).

Every field of a config dataclass becomes one flag: ``max_new_tokens`` -> ``--max-new-tokens``,
typed from its annotation (``int``, ``float``, ``str``, ``bool``, ``X | None``, ``Literal``,
``list[str]`` for a list of positionals). The help text is the field's ``help`` metadata, else
the one-line comment after the field in its source (``port: int = 8000  # where to listen``).
A bool field becomes ``--name`` / ``--no-name``: as switches (the help lists the one that changes
the default, so a bool that defaults to True documents ``--no-name``), or, for configs that are
also YAML files (TrainConfig), as ``--name [BOOL]`` that also takes ``--name false``.
Options shared by several commands live in a small dataclass that each command's config
inherits from (``RunConfig(GuardOptions, ...)``).

Torch-free: ``qaudio train --help`` stays instant.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any, Literal, TypeVar

T = TypeVar("T")

SCALARS = {"int": int, "float": float, "str": str, "bool": bool}


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    choices: tuple | None = None,
    metavar: str | None = None,
    group: str = "",
    positional: bool = False,
    required: bool = False,
    default_factory: Any = dataclasses.MISSING,
    flag: bool = True,
) -> Any:
    """A config field whose flag details travel as metadata.

    ``positional``: an argument without ``--`` (a ``list[str]`` field takes one or more);
    ``required``: the command line must give the flag (the default serves Python callers);
    a bool that defaults to True: ``help`` says what ``--no-NAME`` does (the switch listed);
    ``flag=False``: a field the command line does not set.
    """
    metadata = {
        "help": help,
        "choices": choices,
        "metavar": metavar,
        "group": group,
        "positional": positional,
        "required": required,
        "flag": flag,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(name: str) -> str:
    """``max_new_tokens`` -> ``max-new-tokens`` (without the dashes in front)."""
    return name.replace("_", "-")


def parse_bool(text: str) -> bool:
    """``true``/``yes``/``on``/``1`` and ``false``/``no``/``off``/``0``, as YAML and shells write them."""
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


@functools.cache
def source_comments(cls: type) -> dict[str, str]:
    """Field name -> the ``# comment`` on its line in the class source ({} when the source is unavailable)."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment wins over its base's
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        text = textwrap.dedent(source)
        names = {
            line: node.target.id
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)
        }  # line -> field
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT and tok.start[0] in names:
                comments[names[tok.start[0]]] = tok.string.lstrip("#").strip()
    return comments


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a name only imported for type checking: fall back to the annotation text
        return {}


@dataclasses.dataclass(frozen=True)
class _Kind:
    type: Any  # int, float, str or bool
    choices: tuple | None = None  # from a Literal
    many: bool = False  # list[...]: nargs "+"


def _kind_of(annotation: Any) -> _Kind:
    """What a field's annotation asks of its flag (``X | None`` is X, ``list[X]`` many X)."""
    if isinstance(annotation, str):
        return _kind_of_text(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return _Kind(type(args[0]), tuple(args))
    if origin in (list, tuple):
        return _Kind(_kind_of(args[0]).type if args else str, many=True)
    if args and type(None) in args:  # Optional / X | None
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _kind_of(rest[0])
    if isinstance(annotation, type):
        return _Kind(annotation)
    return _Kind(str)


def _kind_of_text(text: str) -> _Kind:
    parts = [p.strip() for p in text.split("|") if p.strip() not in ("None", "")]
    text = parts[0] if len(parts) == 1 else text
    if text.startswith(("Literal[", "typing.Literal[")):
        values = ast.literal_eval("(" + text[text.index("[") + 1 : -1] + ",)")
        return _Kind(type(values[0]), tuple(values))
    if text.startswith(("list[", "tuple[")):
        return _Kind(SCALARS.get(text[text.index("[") + 1 : -1].split(",")[0].strip(), str), many=True)
    return _Kind(SCALARS.get(text.strip("'\""), str))


def _fields(cls: type) -> list[tuple[dataclasses.Field, _Kind]]:
    hints = _hints(cls)
    return [
        (f, _kind_of(hints.get(f.name, f.type)))
        for f in dataclasses.fields(cls)
        if f.metadata.get("flag", True) and f.init
    ]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def add_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    given_only: bool = False,
    groups: dict[str, Any] | None = None,
    show_default: bool = False,
    bool_values: bool = False,
) -> None:
    """One flag per field of the config dataclass ``cls``.

    ``given_only``: flags the user did not type are absent from the namespace (so a YAML file's
    values are overridden only by typed flags); else each flag defaults to its field's default.
    ``groups``: a field's ``group`` metadata -> the argument group its flag is listed under.
    ``show_default``: append "(default: X)" to the help.
    ``bool_values``: bools as ``--name [BOOL]`` (else switches; ``--no-name`` works either way).
    """
    comments = source_comments(cls)
    for f, kind in _fields(cls):
        meta = f.metadata
        target = (groups or {}).get(meta.get("group", ""), parser)
        help_text = meta.get("help") or comments.get(f.name) or None
        default = _default(f)
        if show_default and help_text is not None:
            help_text = f"{help_text} (default: {default})"
        if help_text is not None:
            help_text = help_text.replace("%", "%%")  # argparse formats help with %
        choices = meta.get("choices") or kind.choices
        value = argparse.SUPPRESS if given_only else default
        if meta.get("positional"):
            target.add_argument(
                f.name,
                nargs="+" if kind.many else None,
                metavar=meta.get("metavar"),
                help=help_text,
                type=kind.type,
                choices=choices,
            )
        elif kind.type is bool and not bool_values:
            on, off = f"--{flag_name(f.name)}", f"--no-{flag_name(f.name)}"
            shown = off if default else on  # the switch that changes something is the one documented
            target.add_argument(
                on,
                dest=f.name,
                action="store_true",
                default=value,
                help=help_text if shown == on else argparse.SUPPRESS,
            )
            target.add_argument(
                off,
                dest=f.name,
                action="store_false",
                default=value,
                help=help_text if shown == off else argparse.SUPPRESS,
            )
        elif kind.type is bool:
            # --strict / --no-strict, and --strict false for YAML-like use
            target.add_argument(
                f"--{flag_name(f.name)}",
                dest=f.name,
                nargs="?",
                const=True,
                type=parse_bool,
                default=value,
                metavar="BOOL",
                help=help_text,
            )
            target.add_argument(
                f"--no-{flag_name(f.name)}", dest=f.name, action="store_false", default=value, help=argparse.SUPPRESS
            )
        else:
            target.add_argument(
                f"--{flag_name(f.name)}",
                dest=f.name,
                type=kind.type,
                choices=choices,
                nargs="+" if kind.many else None,
                default=value,
                metavar=meta.get("metavar"),
                required=meta.get("required", False),
                help=help_text,
            )


def values_from_args(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The namespace's values of ``cls``'s flags, by field name (flags not in the namespace left out)."""
    values: dict[str, Any] = {}
    given = vars(args)
    for f, kind in _fields(cls):
        if f.name in given:
            value = given[f.name]
            values[f.name] = list(value) if kind.many and value is not None else value
    return values


def from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """The config ``cls`` from a parsed namespace (fields without a flag from ``overrides``)."""
    return cls(**{**values_from_args(cls, args), **overrides})

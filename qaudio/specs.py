"""Finding task specs, corpus recipes and evaluation suites, by name or by file path.

The built-in specs live in the repo's top-level ``tasks/``, ``data_recipes/`` and
``eval_suites/`` folders; a wheel carries them as ``qaudio._builtin.*``. Each folder's
``__init__.py`` registers its items in one dict (``TASKS``, ``RECIPES``, ``SUITES``). A user's
own spec is one Python file holding a ``TASK``, ``RECIPE`` or ``SUITE`` object, passed by path
wherever a name is accepted, so nothing under ``qaudio/`` needs editing.

Only entry points (train, evaluate, infer, the CLI) call this module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .recipe import Recipe
    from .suite import Suite
    from .task import Task

# kind -> (registry dict name in the folder's __init__.py, object name in a user's file)
SPEC_KINDS = {
    "tasks": ("TASKS", "TASK"),
    "data_recipes": ("RECIPES", "RECIPE"),
    "eval_suites": ("SUITES", "SUITE"),
}
_REPO_ROOT = Path(__file__).resolve().parent.parent


def _load_file(path: Path, module_name: str, package_dir: Path | None = None) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=[str(package_dir)] if package_dir else None
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module (not a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before exec, so relative imports inside resolve
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _builtin_package(kind: str) -> ModuleType:
    name = f"qaudio._builtin.{kind}"
    if name in sys.modules:
        return sys.modules[name]
    source_dir = _REPO_ROOT / kind  # a source checkout: the live folder, so edits take effect
    if (source_dir / "__init__.py").is_file():
        return _load_file(source_dir / "__init__.py", name, source_dir)
    return importlib.import_module(name)  # an installed wheel


def registry(kind: str) -> dict:
    """The built-in items of one kind, by name."""
    if kind not in SPEC_KINDS:
        raise ValueError(f"unknown spec kind {kind!r}; valid choices: {', '.join(SPEC_KINDS)}")
    return getattr(_builtin_package(kind), SPEC_KINDS[kind][0])


def get(kind: str, name_or_path: str) -> Any:
    """A built-in item by name, or the item defined in a user's ``.py`` file."""
    if name_or_path.endswith(".py") or Path(name_or_path).is_file():
        path = Path(name_or_path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{kind} file {path} does not exist")
        attr = SPEC_KINDS[kind][1]
        module = _load_file(path, f"qaudio_user_{kind}_{path.stem}")
        if not hasattr(module, attr):
            raise ValueError(f"{path} defines no {attr} object; a {kind} file must set {attr} = ...")
        return getattr(module, attr)
    items = registry(kind)
    if name_or_path not in items:
        raise ValueError(
            f"unknown {kind.rstrip('s').replace('_', ' ')} {name_or_path!r}; valid choices: {', '.join(items)} "
            "(or the path of a .py file)"
        )
    return items[name_or_path]


def get_task(name_or_path: str) -> Task:
    """A task by name, by one of its aliases (``emotion`` is ``ser``), or from a ``.py`` file."""
    for task in registry("tasks").values():
        if name_or_path in task.aliases:
            return task
    return get("tasks", name_or_path)


def task_names() -> list[str]:
    """Every name a built-in task answers to: names, then aliases."""
    tasks = registry("tasks").values()
    return [t.name for t in tasks] + [a for t in tasks for a in t.aliases]


def get_recipe(name_or_path: str) -> Recipe:
    return get("data_recipes", name_or_path)


def get_suite(name_or_path: str) -> Suite:
    return get("eval_suites", name_or_path)

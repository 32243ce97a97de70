"""The documentation's examples cannot rot: they are run here.

- ``python`` blocks of ``docs/*.md`` (and of README.md) run, each in a fresh namespace, in a folder that holds
  what the guides assume (a saved model at ``runs/demo/model``, the audio files they name),
  with the tiny preset standing in for a trained model. A block that cannot run offline is
  marked by the line ``<!-- not-tested: REASON -->`` right before it (invisible on the site);
  it is skipped with that reason. A block marked ``<!-- served -->`` talks to ``qaudio serve``
  on port 8000 with the key ``KEY``: it runs against a server started here on a free port.
- ``console`` blocks are transcripts: each ``$ qaudio ...`` command is run and its output
  must equal the lines shown under it.
- ``bash`` blocks: every ``qaudio COMMAND ...`` line, and every ``python -m MODULE ...`` or
  ``accelerate launch ... -m MODULE ...`` line of a module with a command line, is parsed by
  that command's own parser, so a documented flag, choice or argument that does not exist fails.

At the end the number of examples executed, replayed and parsed is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.util
import io
import re
import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
NOT_TESTED = re.compile(r"<!-- not-tested: (.+?) -->\s*$")
SERVED = "<!-- served -->"
DOCUMENTED_SERVER = "http://127.0.0.1:8000"  # where the guides' clients connect
COUNTS: Counter = Counter()


@dataclass(frozen=True)
class Block:
    page: str  # path under docs/
    line: int  # line of the opening fence
    lang: str
    code: str
    not_tested: str | None  # the reason, when the block is marked
    served: bool  # it needs a running server

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(lang: str) -> list[Block]:
    found = []
    for path in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if m.group(1) != lang:
                continue
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = NOT_TESTED.search(before)
            found.append(
                Block(
                    str(path.relative_to(DOCS if path.is_relative_to(DOCS) else ROOT)),
                    text.count("\n", 0, m.start()) + 1,
                    lang,
                    m.group(2),
                    marker.group(1) if marker else None,
                    before.strip() == SERVED,
                )
            )
    return found


def _ids(items: list[Block]) -> list[str]:
    return [b.where for b in items]


@functools.cache
def _reference_hook():
    """docs/hooks/reference.py, the site's build hook: it builds each command's parser."""
    spec = importlib.util.spec_from_file_location("docs_reference_hook", DOCS / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or not COUNTS:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(
            f"\ndocs examples: {COUNTS['python']} python blocks executed, {COUNTS['console']} console commands "
            f"replayed, {COUNTS['shell']} command lines parsed; {COUNTS['not-tested']} python blocks marked not-tested"
        )


# ---- python blocks ------------------------------------------------------------------------------

SR = 16_000


def _speechlike(seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    """Tone bursts with pauses: a stand-in for speech (the model is random anyway)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) * (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > 0)
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder with what the guides' Python examples open: the model and the audio files."""
    from tests.test_infer_model import tiny_model_dir

    root = tmp_path_factory.mktemp("docs-workspace")
    tiny_model_dir(root / "runs" / "demo" / "model")
    files = {
        "speech.wav": 2.0,
        "rede.flac": 1.5,
        "street.ogg": 1.5,
        "clip.wav": 1.0,
        "a.wav": 1.0,
        "b.wav": 1.2,
        "long_talk.wav": 21.0,
    }
    for seed, (name, seconds) in enumerate(files.items()):
        sf.write(root / name, _speechlike(seconds, seed), SR)
    sf.write(root / "speech_44k.wav", _speechlike(1.0, 99, sr=44_100), 44_100)
    return root


@pytest.mark.parametrize("block", blocks("python"), ids=_ids(blocks("python")))
def test_python_example_runs(block: Block, request, monkeypatch):
    if block.not_tested:
        COUNTS["not-tested"] += 1
        pytest.skip(f"{block.where}: not tested ({block.not_tested})")
    workspace = request.getfixturevalue("workspace")  # only for the blocks that run
    monkeypatch.chdir(workspace)
    # A random model never stops on its own: cap generation so the examples take seconds.
    import qaudio
    import qaudio.infer
    from tests.test_infer_model import MAX_NEW_TOKENS as cap

    original = qaudio.infer.load

    def load_capped(*args, **kwargs):
        model = original(*args, **kwargs)
        model.max_new_tokens = cap
        return model

    monkeypatch.setattr(qaudio.infer, "load", load_capped)
    namespace = {"__name__": "__docs_example__"}
    source = block.code
    with contextlib.ExitStack() as stack:
        if block.served:
            from qaudio.serve import BackgroundServer, ServeConfig, create_app

            key = "docs-key"
            url = stack.enter_context(
                BackgroundServer(create_app(qaudio.load("runs/demo/model", device="cpu"), ServeConfig(api_key=key)))
            )
            assert DOCUMENTED_SERVER in source, f"{block.where}: a served block that does not use {DOCUMENTED_SERVER}"
            source = source.replace(DOCUMENTED_SERVER, url)
            namespace["KEY"] = key
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        exec(compile(source, block.where, "exec"), namespace)
    COUNTS["python"] += 1


# ---- console transcripts ---------------------------------------------------------------------------


def transcripts(block: Block) -> list[tuple[str, list[str]]]:
    """``[(command, expected output lines)]`` of a console block."""
    out: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
    return out


@pytest.mark.parametrize("block", blocks("console"), ids=_ids(blocks("console")))
def test_console_transcript_matches(block: Block):
    from qaudio.cli import main as cli_main

    pairs = transcripts(block)
    assert pairs, f"{block.where}: a console block without a '$ ' command"
    for command, expected in pairs:
        argv = shlex.split(command)
        assert argv[0] == "qaudio", f"{block.where}: only qaudio commands are replayed, got {command!r}"
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            status = cli_main(argv[1:])
        assert status == 0, f"{block.where}: {command!r} exited with {status}"
        assert stdout.getvalue().splitlines() == expected, f"{block.where}: {command!r} prints something else"
        COUNTS["console"] += 1


# ---- shell command lines -----------------------------------------------------------------------------


def command_lines(code: str) -> list[list[str]]:
    """The block's commands as argument lists: continuations joined, comments and redirections cut."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        try:
            argv = shlex.split(line, comments=True)
        except ValueError:  # an unbalanced quote in a line that is not a command (none today)
            continue
        for i, token in enumerate(argv):
            if token in (">", ">>", "|", "&&", ";", "2>"):
                argv = argv[:i]
                break
        if argv:
            commands.append(argv)
    return commands


def parser_for(argv: list[str]) -> tuple[str, argparse.ArgumentParser | None, list[str]]:
    """``(name, parser, arguments)`` for ``qaudio CMD ...`` and ``... -m MODULE ...`` lines;
    the parser is None for a line that is no qaudio command."""
    hook = _reference_hook()
    if argv[0] == "qaudio":
        return f"qaudio {argv[1]}", hook.command_parser(argv[1]), argv[2:]
    if "-m" in argv:
        at = argv.index("-m")
        module = importlib.import_module(argv[at + 1])
        parser = argparse.ArgumentParser(prog=f"python -m {argv[at + 1]}")
        if not hasattr(module, "add_arguments"):
            return argv[at + 1], None, []
        module.add_arguments(parser)
        return argv[at + 1], parser, argv[at + 2 :]
    return argv[0], None, []


@pytest.mark.parametrize("block", blocks("bash"), ids=_ids(blocks("bash")))
def test_shell_commands_parse(block: Block):
    for argv in command_lines(block.code):
        name, parser, args = parser_for(argv)
        if parser is None:
            continue
        parser.exit_on_error = False
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                parser.parse_args(args)
        except (SystemExit, argparse.ArgumentError) as e:
            pytest.fail(
                f"{block.where}: {shlex.join(argv)!r} does not parse with {name}'s flags: "
                f"{errors.getvalue().strip() or e}"
            )
        COUNTS["shell"] += 1


def test_a_command_that_does_not_exist_is_caught():
    """The parse check can fail: a made-up flag or command is refused."""
    name, parser, args = parser_for(["qaudio", "run", "m", "a.wav", "--no-such-flag"])
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        parser.parse_args(args)
    with pytest.raises(ValueError, match="unknown qaudio command"):
        parser_for(["qaudio", "no-such-command"])


# ---- the generated references --------------------------------------------------------------------------


def test_configuration_reference_lists_every_field_with_its_flag():
    import dataclasses

    from qaudio.training.config import TrainConfig

    hook = _reference_hook()
    page = hook.render((DOCS / "reference" / "configuration.md").read_text(encoding="utf-8"))
    assert "<!-- config:" not in page
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert f"| `{f.name}` | `{flag}` |" in page, f"TrainConfig.{f.name} is missing from the reference"
    assert "| `max_batch` | `--max-batch` |" in page  # ServeConfig, flag read from qaudio serve's parser
    assert "| `stack` |" in page  # a ModelConfig section, help from the field's comment

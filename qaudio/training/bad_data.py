"""Bad data never crashes a run: unusable examples are skipped, counted and summarised.

Unreadable or corrupt audio, a missing file, silence, an empty target or a clip longer than
the encoder window each have a reason name; the log keeps a count per reason and the first
few examples of each, and prints a summary at the end. In strict mode the first one raises
:class:`BadDataError` naming the example, where it came from and its audio path.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

SHOWN_PER_REASON = 5  # examples listed per reason in the summary


class BadDataError(RuntimeError):
    """Raised in strict mode at the first unusable example."""


class TrainingAborted(RuntimeError):
    """Training stopped on purpose (e.g. too many non-finite losses); the message says why."""


@dataclass
class BadItem:
    reason: str  # short reason name, e.g. "audio", "empty target", "too long"
    example_id: str
    audio: str  # the audio path
    detail: str  # the underlying error message
    source: str = ""  # where the example came from, e.g. "synthetic train, line 17"

    def describe(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"example {self.example_id!r}{where}, audio {self.audio}: {self.reason}: {self.detail}"


@dataclass
class BadDataLog:
    strict: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # example id -> reason; never loaded again
    shown: dict[str, list[str]] = field(default_factory=dict)  # reason -> first few descriptions

    def record(self, item: BadItem) -> None:
        """Count one unusable example (once per id), or raise in strict mode."""
        if self.strict:
            raise BadDataError(
                f"{item.describe()} (--strict stops at the first unusable example; "
                "drop --strict to skip and count such examples)"
            )
        if item.example_id in self.skipped:
            return
        self.skipped[item.example_id] = item.reason
        self._show(item.reason, item.describe())

    def _show(self, reason: str, description: str) -> None:
        shown = self.shown.setdefault(reason, [])
        if len(shown) < SHOWN_PER_REASON and description not in shown:
            shown.append(description)

    @property
    def counts(self) -> Counter:
        return Counter(self.skipped.values())

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "bad data: none skipped"
        lines = [f"bad data: {self.total} example(s) skipped"]
        for reason, n in self.counts.most_common():
            lines.append(f"  {reason}: {n}")
            lines.extend(f"    {d}" for d in self.shown.get(reason, []))
            if n > len(self.shown.get(reason, [])):
                lines.append(f"    ... and {n - len(self.shown[reason])} more")
        return "\n".join(lines)

    def merge(self, state: dict) -> None:
        """Add another process's log (its :meth:`state_dict`): the run's summary covers every process."""
        for example_id, reason in state["skipped"].items():
            self.skipped.setdefault(example_id, reason)
        for reason, described in state["shown"].items():
            for d in described:
                self._show(reason, d)

    def state_dict(self) -> dict:
        return {"skipped": dict(self.skipped), "shown": {k: list(v) for k, v in self.shown.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.skipped.clear()  # in place: collators hold this dict as their known-bad set
        self.skipped.update(state["skipped"])
        self.shown = {k: list(v) for k, v in state["shown"].items()}

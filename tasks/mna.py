"""Music note analysis (NSynth): instrument family and MIDI pitch, written "guitar, pitch 60".

Scored by exact match of the whole answer; the metric also reports instrument and pitch
accuracy separately.
"""

from qaudio.tags import TagPath
from qaudio.task import Task

INSTRUMENT_FAMILIES = (
    "bass",
    "brass",
    "flute",
    "guitar",
    "keyboard",
    "mallet",
    "organ",
    "reed",
    "string",
    "synth_lead",
    "vocal",
)


def note_target(instrument_family: str, midi_pitch: int) -> str:
    """The one way an mna target is written."""
    return f"{instrument_family}, pitch {int(midi_pitch)}"


TASK = Task(
    name="mna",
    tag_path=TagPath("analysis", "keyword", "note_analysis"),
    metric="note",
    profile="qwen_audio",
    speech=False,
    aliases=("note",),
    description="music note analysis: instrument family and MIDI pitch (accuracy)",
)

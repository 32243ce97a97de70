"""The built-in tasks, registered in one place. A user's task is one file with a ``TASK``
object, passed by path wherever a task name is accepted."""

from . import aac, aqa, asc, asr, mna, s2tt, ser, srwt, vsc

TASKS = {m.TASK.name: m.TASK for m in (asr, s2tt, srwt, aac, aqa, ser, asc, vsc, mna)}

"""Cyclic garbage collection paused while ``eokafka`` starts a command.

A worker's start imports the runtime's modules and builds their classes and its parts: many
thousands of objects that live as long as the process, and next to no garbage cycles. The
collector still scans the young ones dozens of times on the way (~10 ms of CPU per start).
``pause`` (the CLI's first step) turns it off; ``resume`` (once the worker is built and
before it polls, or before any other command runs) moves everything alive then to the
permanent generation (``gc.freeze``: never scanned again; a cycle left over from the start
is kept, not collected) and turns collection back on. Only a pause made here is resumed:
an embedding program's own ``gc.disable()`` is left alone.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    global _paused
    if not _paused and gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()

"""Test hook: SIGKILL the worker at a named point inside a sink, once.

Chaos tests need kills at moments no outside signal can hit reliably: between the
PostgreSQL ``PREPARE TRANSACTION`` and the Kafka commit, between the Kafka commit and
``COMMIT PREPARED``, half-way through a batch, between the renames of a part file. Two
environment variables arm it:

* ``EOKAFKA_TEST_CRASH_AT=<point>:<n>``: die the n-th time this process passes ``<point>``;
* ``EOKAFKA_TEST_CRASH_FLAG=<path>``: a file created just before dying; while it exists the
  point is disarmed, so the restarted worker goes on.

Points: ``postgres.mid-batch``, ``postgres.after-prepare``, ``postgres.before-commit-prepared``,
``postgres.after-commit`` (offsets-in-the-database mode, before the Kafka commit),
``files.after-fsync``, ``files.after-prepare``, ``files.before-done``, ``files.mid-rename``.
Unset (the normal case), ``reached`` is a dict lookup.
"""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("EOKAFKA_TEST_CRASH_AT", "")
_point, _, _count = _spec.partition(":")
_left = {_point: int(_count or "1")} if _point else {}


def reached(point: str) -> None:
    """SIGKILL this process if the armed crash point is ``point`` and its turn has come."""
    if point not in _left:
        return
    _left[point] -= 1
    if _left[point] > 0:
        return
    flag = os.environ.get("EOKAFKA_TEST_CRASH_FLAG")
    if flag:
        try:
            os.close(os.open(flag, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            _left.clear()
            return
    os.kill(os.getpid(), signal.SIGKILL)

"""Test hook: SIGKILL (or SIGSTOP) the worker at a named point inside a connector, once.

Chaos tests need kills at moments no outside signal can hit reliably: between the
PostgreSQL ``PREPARE TRANSACTION`` and the Kafka commit, between the Kafka commit and
``COMMIT PREPARED``, half-way through a batch, between the renames of a part file.
Environment variables arm it:

* ``EOKAFKA_TEST_CRASH_AT=<point>:<n>``: die the n-th time this process passes ``<point>``;
* ``EOKAFKA_TEST_CRASH_FLAG=<path>``: a file created just before dying; while it exists the
  point is disarmed, so the restarted worker goes on.
* ``EOKAFKA_TEST_PAUSE_AT=<point>:<n>``: stop (SIGSTOP) the n-th time this process passes
  ``<point>``, after creating ``EOKAFKA_TEST_PAUSE_FLAG=<path>``; the test resumes it with
  SIGCONT, e.g. after a successor took over (a zombie at an exact step).

Points: ``postgres.mid-batch``, ``postgres.after-prepare``, ``postgres.before-commit-prepared``,
``postgres.after-commit`` (offsets-in-the-database mode, before the Kafka commit),
``files.before-append``, ``files.after-fsync``, ``files.after-prepare``, ``files.before-done``,
``files.before-rename``, ``files.mid-rename``, ``file-source.poll``, ``postgres-source.poll``.
Unset (the normal case), ``reached`` is a dict lookup.
"""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("EOKAFKA_TEST_CRASH_AT", "")
_point, _, _count = _spec.partition(":")
_left = {_point: int(_count or "1")} if _point else {}
_pause_point, _, _pause_count = os.environ.get("EOKAFKA_TEST_PAUSE_AT", "").partition(":")
_pause_left = {_pause_point: int(_pause_count or "1")} if _pause_point else {}


def reached(point: str) -> None:
    """SIGKILL (SIGSTOP) this process if the armed crash (pause) point is ``point`` and its
    turn has come."""
    if point in _pause_left:
        _pause(point)
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


def _pause(point: str) -> None:
    _pause_left[point] -= 1
    if _pause_left[point] != 0:
        return
    flag = os.environ.get("EOKAFKA_TEST_PAUSE_FLAG")
    if flag:
        with open(flag, "w") as f:
            f.write(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGSTOP)

"""Test hook: SIGKILL (or SIGSTOP) the worker at a named point of a commit, once.

Chaos tests need kills at moments no outside signal can hit reliably: between the
transaction's offsets and its commit, between the PostgreSQL ``PREPARE TRANSACTION`` and the
Kafka commit, between the Kafka commit and ``COMMIT PREPARED``, half-way through a batch,
between the renames of a part file. Two environment variables arm it, a third picks the
signal:

* ``EOKAFKA_TEST_CRASH_AT=<point>:<n>``: die the n-th time this process passes ``<point>``;
* ``EOKAFKA_TEST_CRASH_FLAG=<path>``: a file created just before dying; while it exists the
  point is disarmed, so the restarted worker goes on;
* ``EOKAFKA_TEST_CRASH_SIGNAL=STOP``: stop instead of dying, so a test can start a successor
  while this process is frozen there (a GC pause, a VM pause) and then SIGCONT it: a zombie.

Points: ``commit.offsets-sent`` (the consumed offsets are in the open transaction, its
commit not asked for yet), ``postgres.after-control``, ``postgres.mid-batch``,
``postgres.before-prepare``, ``postgres.after-prepare``, ``postgres.before-commit-prepared``,
``postgres.after-commit`` (offsets-in-the-database mode, before the Kafka commit),
``postgres-source.poll``, ``file-source.poll``, ``files.after-fsync``, ``files.after-prepare``,
``files.before-done``, ``files.mid-rename``.
Unset (the normal case), ``reached`` is a dict lookup.
"""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("EOKAFKA_TEST_CRASH_AT", "")
_point, _, _count = _spec.partition(":")
_left = {_point: int(_count or "1")} if _point else {}
_stop = os.environ.get("EOKAFKA_TEST_CRASH_SIGNAL") == "STOP"
_signal = signal.SIGSTOP if _stop else signal.SIGKILL


def reached(point: str) -> None:
    """Kill (or stop) this process if the armed point is ``point`` and its turn has come."""
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
    _left.clear()  # a stopped process that is continued goes on past every point
    os.kill(os.getpid(), _signal)

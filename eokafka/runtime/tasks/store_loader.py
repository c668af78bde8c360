"""Where a task's stores come from and go to: open, decide the restore, wipe, close.

A store instance belongs to one partition index (all topics that use a store must have the
same partition count; partition p of each is served by instance p), and to the task of that
index (task.py), which holds it while open. A task that is suspended keeps its stores open;
when it comes back, the checkpoint decides whether anything must be read. The reading itself
is changelog_reader.py's, in the worker loop: the task's inputs stay paused until its stores
have caught up.

Checkpoints. A store's checkpoint ``c`` says: the store reflects every committed changelog
record below ``c - 1``; the record at ``c - 1`` is reflected too, or is no data of this store
(a transaction marker). A commit whose last changelog record is at ``L`` writes ``c = L + 2``:
the commit marker of that transaction will follow ``L``, usually right at ``L + 1``. A restore
writes the offset it read up to. A restore resumes at ``c - 1``: re-applying a record the
store already reflects changes nothing (the last write per key wins).

When is a store up to date without reading anything? Let ``low``, ``stable`` and ``high`` be
the changelog partition's low watermark, last stable offset and high watermark:

* ``max(c - 1, low) >= high``: there is nothing to read.
* ``c == high`` and ``stable == high``: the partition has one offset past ``L`` and no open
  transaction. The commit that wrote ``c`` had its marker written (its transaction is not
  open), after ``L`` and below ``high``: so the marker is that one offset, and nothing else
  is there. After a restore the offset ``c - 1`` is reflected. Either way nothing to apply.

Otherwise the restore reads from ``max(c - 1, low)``. This stays sound when commit markers
are written after ``commit_transaction`` returned (the transaction is open on the partition
until then: ``stable < high``, so the second case does not apply) and when a zombie's records
sit in the tail (they take offsets, so ``high`` is past ``c``, and read_committed skips them
once aborted). A restore ends when the read_committed position reaches the high watermark
seen at its start: every transaction that wrote to the changelog before then is resolved,
and what it committed is in the store.

Strict restore. The restore consumer never moves to another offset by itself
(``auto.offset.reset=error``). A checkpoint outside the changelog means the store's state is
not the changelog's: below ``low`` (records the store never saw were deleted: retention of a
``compact,delete`` window changelog, or DeleteRecords), more than one past ``high``, or a
changelog topic that was deleted and created again (its topic id, kept next to the store's
files, differs). The store is then wiped and restored in full, with a log line saying why; so
is a store whose restore position falls out of range while it restores.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from eokafka.config import Settings
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.tasks.changelog_reader import Restore
from eokafka.runtime.topics import PartitionState, TopicGuard
from eokafka.state import Store, StoreCorruptError, StoreSpec, open_store, store_dir

log = logging.getLogger("eokafka.stores")
TOPIC_ID_FILE = "changelog-topic-id"  # beside a persistent store's files


class WarmStores(Protocol):
    """Standby replicas as the active side sees them (standby.py)."""

    def take(self, store_name: str, partition: int) -> Store | None:
        """The warm copy of a store that becomes active here, or None."""

    def release(self, store_name: str, partition: int, store: Store) -> bool:
        """Keep a store leaving the active side as a standby; False: close it."""


class StoreLoader:
    def __init__(
        self,
        settings: Settings,
        specs: dict[str, StoreSpec],
        changelogs: dict[str, str],
        metrics: WorkerMetrics,
        topics: TopicGuard,
        record_limit: Callable[[str], int] | None = None,
    ) -> None:
        self.settings = settings
        self.specs = specs
        self.changelogs = changelogs
        self.metrics = metrics
        self.topics = topics
        # The most key + value bytes a record to a changelog topic can carry.
        self.record_limit = record_limit
        self.standby: WarmStores | None = None

    # -- open and close ------------------------------------------------------------------

    def open(self, name: str, partition: int) -> Store:
        """A store that becomes active here: the standby's warm copy, or its files."""
        if self.standby is not None:
            warm = self.standby.take(name, partition)
            if warm is not None:
                return warm
        return self._open(name, partition)

    def close(self, name: str, partition: int, store: Store) -> None:
        """A store leaving the active side: kept as a standby, or closed."""
        for gauge in (self.metrics.store_keys, self.metrics.restore_remaining):
            try:
                gauge.remove(name, str(partition))
            except KeyError:
                pass
        if self.standby is None or not self.standby.release(name, partition, store):
            store.close()

    def _open(self, name: str, partition: int) -> Store:
        spec = self.specs[name]
        state_dir, app_id = self.settings.state_dir, self.settings.application_id
        try:
            store = open_store(spec, state_dir, app_id, partition)
        except StoreCorruptError as exc:
            log.warning("%s; wiping it to restore in full from the changelog", exc)
            shutil.rmtree(store_dir(state_dir, app_id, name, partition), ignore_errors=True)
            store = open_store(spec, state_dir, app_id, partition)
        if self.record_limit is not None:  # a write too large for its changelog fails at put
            store.max_record_bytes = self.record_limit(self.changelogs[name])
        return store

    def _wipe(self, name: str, partition: int, store: Store, why: str) -> Store:
        """Delete a store's local state and open it empty, to restore it in full."""
        log.warning(
            "store %s[%d]: %s; wiping it to restore in full from the changelog",
            name, partition, why,
        )  # fmt: skip
        store.destroy()
        return self._open(name, partition)

    # -- the restore decision ------------------------------------------------------------

    def plan(self, name: str, partition: int, store: Store) -> tuple[Store, Restore | None]:
        """Decide from the checkpoint and the changelog's offsets whether the store must read
        its changelog, from where, or be wiped first (see the module docstring). Returns the
        store (another one if it was wiped) and its restore, or None when up to date."""
        topic = self.changelogs[name]
        state = self.topics.partition_state(topic, partition)
        why = self._invalid(name, partition, store.checkpoint, state)
        if why is not None:
            store = self._wipe(name, partition, store, why)
        self._keep_topic_id(name, partition, state.topic_id)
        c = store.checkpoint
        start = state.low if c is None else max(c - 1, state.low)
        if start >= state.high or (c == state.high and state.stable == state.high):
            log.info(
                "store %s[%d] is up to date at changelog offset %d", name, partition, state.high
            )
            return store, None
        log.info(
            "restoring store %s[%d]: changelog offsets %d..%d", name, partition, start, state.high
        )
        restore = Restore(
            name, partition, store, start, state.high,
            floor=c or 0, counted_from=c or 0, full=c is None,
        )  # fmt: skip
        return store, restore

    def restart_in_full(self, lost: Restore, why: str) -> Restore:
        """The restore position left the changelog (records deleted under it): start over."""
        name, partition = lost.name, lost.partition
        store = self._wipe(name, partition, lost.store, why)
        state = self.topics.partition_state(self.changelogs[name], partition)
        self._keep_topic_id(name, partition, state.topic_id)
        log.info(
            "restoring store %s[%d] in full: changelog offsets %d..%d",
            name, partition, state.low, state.high,
        )  # fmt: skip
        return Restore(name, partition, store, state.low, state.high, full=True)

    def _invalid(
        self, name: str, partition: int, c: int | None, state: PartitionState
    ) -> str | None:
        """Why the local state can't be brought forward from its checkpoint, or None."""
        topic = self.changelogs[name]
        kept = self._topic_id_file(name, partition)
        if kept is not None and state.topic_id is not None and kept.exists():
            if kept.read_text().strip() != state.topic_id:
                return (
                    f"changelog {topic}[{partition}] was deleted and created again (topic id "
                    f"{state.topic_id}, the store was built from {kept.read_text().strip()})"
                )
        if c is None:
            return None
        if c < state.low:
            return (
                f"checkpoint {c} is below the low watermark {state.low} of changelog "
                f"{topic}[{partition}]: records the store never applied were deleted "
                "(retention or DeleteRecords)"
            )
        if c > state.high + 1:
            return (
                f"checkpoint {c} is past the end offset {state.high} of changelog "
                f"{topic}[{partition}]: the changelog was deleted and created again"
            )
        return None

    def _topic_id_file(self, name: str, partition: int) -> Path | None:
        """Where a persistent store keeps the id of the changelog topic it was built from."""
        if self.specs[name].backend == "memory":
            return None
        state_dir, app_id = self.settings.state_dir, self.settings.application_id
        return store_dir(state_dir, app_id, name, partition) / TOPIC_ID_FILE

    def _keep_topic_id(self, name: str, partition: int, topic_id: str | None) -> None:
        path = self._topic_id_file(name, partition)
        if path is None or topic_id is None:
            return
        if not path.exists() or path.read_text().strip() != topic_id:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(topic_id)
            tmp.replace(path)

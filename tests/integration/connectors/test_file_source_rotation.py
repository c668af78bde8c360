"""The file source on real worker processes while files rotate, grow long lines, or go away.

A writer in the test appends JSON lines and rotates the file as log writers do; the topic
must then hold every line written exactly once (the reference is the test's own list of ids
written, compared with the ids read back read_committed).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import TextIO

import pytest

from tests.integration.harness import WorkerProcess, wait_for, worker
from tests.kafka_helpers import create_topic, read_committed, unique_name

pytestmark = pytest.mark.integration
TARGET = "tests.apps.file_source:app"
LIVENESS = 180  # generous bound for a loaded 2-core machine


def _lines(ids: range, pad: int = 0) -> str:
    return "".join(json.dumps({"id": n, "pad": "x" * pad}) + "\n" for n in ids)


def _start(bootstrap: str, tmp: Path, folder: Path, **env: str) -> tuple[WorkerProcess, str, str]:
    app_id, out = unique_name("frot"), unique_name("frot-out")
    create_topic(bootstrap, out, 2)
    full = {"TEST_APP_ID": app_id, "TEST_SOURCE_DIR": str(folder), "TEST_OUTPUT": out,
            "EOKAFKA_BATCH_SIZE": "40", **env}  # fmt: skip
    w = worker(TARGET, bootstrap, tmp, "w", full, ["--instance-id", "a"]).start()
    return w, app_id, out


def _ids(bootstrap: str, topic: str, count: int) -> list[int]:
    return [json.loads(r.value)["id"] for r in read_committed(bootstrap, topic, count, 120)]


def _read_back(bootstrap: str, topic: str, w: WorkerProcess, count: int) -> Counter[int]:
    """The ids committed once ``count`` records are there (restarting a killed worker)."""

    def enough() -> bool:
        if not w.alive:
            w.start()  # the crash point fired: the restart goes on from the committed position
        try:
            return len(read_committed(bootstrap, topic, timeout=30)) >= count
        except TimeoutError:
            return False

    wait_for(enough, LIVENESS, f"{count} records in {topic}", interval=0.5)
    return Counter(_ids(bootstrap, topic, count))


def _assert_exactly(got: Counter[int], written: list[int]) -> None:
    dupes = sorted(i for i, c in got.items() if c > 1)
    missing = sorted(set(written) - set(got))
    extra = sorted(set(got) - set(written))
    assert not dupes, f"{len(dupes)} lines read twice, e.g. {dupes[:5]}"
    assert not missing, f"{len(missing)} of {len(written)} lines never read, e.g. {missing[:5]}"
    assert not extra, f"ids never written: {extra[:5]}"


def test_copy_truncate_rotation_reads_every_line_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    """logrotate's copytruncate: the copy (``events.jsonl.N``, outside the pattern) keeps the
    old lines, the file starts again from nothing and soon grows past the old position."""
    folder = tmp_path / "in"
    folder.mkdir()
    live = folder / "events.jsonl"
    live.write_text(_lines(range(0, 200)))
    w, _, out = _start(kafka_bootstrap, tmp_path, folder)
    written = list(range(200))
    try:
        for rotation in range(3):
            _read_back(kafka_bootstrap, out, w, len(written))  # rotate once the source is there
            shutil.copyfile(live, folder / f"events.jsonl.{rotation + 1}")
            with open(live, "r+") as f:
                f.truncate(0)
            start = 1000 * (rotation + 1)
            new = range(start, start + 300)  # more bytes than before the truncation
            with open(live, "a") as f:
                for n in new:
                    f.write(_lines(range(n, n + 1), pad=rotation))
                    if n % 50 == 0:
                        f.flush()
            written += new
        _assert_exactly(_read_back(kafka_bootstrap, out, w, len(written)), written)
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()


def test_rename_rotation_reads_every_line_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``events.jsonl`` -> ``events-N.jsonl`` with lines the source has not read yet, and more
    written to the renamed file (the writer reopens later), then a new ``events.jsonl``; the
    worker is SIGKILLed on the way and goes on from the position Kafka committed."""
    folder = tmp_path / "in"
    folder.mkdir()
    live = folder / "events.jsonl"
    w, _, out = _start(
        kafka_bootstrap, tmp_path, folder,
        EOKAFKA_TEST_CRASH_AT="file-source.poll:40",
        EOKAFKA_TEST_CRASH_FLAG=str(tmp_path / "crashed"),
    )  # fmt: skip
    written: list[int] = []

    def write(f: TextIO, count: int) -> None:
        start = len(written)
        f.write(_lines(range(start, start + count)))
        f.flush()
        written.extend(range(start, start + count))

    try:
        f = open(live, "a")  # noqa: SIM115 (the writer keeps its file across the rename)
        for rotation in range(1, 5):
            write(f, 150)
            _read_back(kafka_bootstrap, out, w, len(written))  # the source is in this file
            write(f, 50)  # not read yet, most likely
            os.rename(live, folder / f"events-{rotation}.jsonl")
            write(f, 50)  # still written to the renamed file
            f.close()
            f = open(live, "a")  # noqa: SIM115
        write(f, 10)
        f.close()
        _assert_exactly(_read_back(kafka_bootstrap, out, w, len(written)), written)
        assert (tmp_path / "crashed").exists(), "the crash point never fired"
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()


def test_same_names_in_two_folders_and_finished_files_leave_the_position(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``**/*.jsonl`` with ``a/events.jsonl`` and ``b/events.jsonl``: two files, two positions.
    Files read and then deleted leave the stored position."""
    folder = tmp_path / "in"
    for sub, ids in (("a", range(0, 100)), ("b", range(100, 250))):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "events.jsonl").write_text(_lines(ids))
    for i in range(5):
        (folder / f"old-{i}.jsonl").write_text(_lines(range(1000 + 10 * i, 1010 + 10 * i)))
    w, app_id, out = _start(kafka_bootstrap, tmp_path, folder, TEST_SOURCE_PATTERN="**/*.jsonl")
    written = [*range(250), *range(1000, 1050)]
    try:
        _assert_exactly(_read_back(kafka_bootstrap, out, w, len(written)), written)
        for i in range(5):
            (folder / f"old-{i}.jsonl").unlink()
        with open(folder / "a" / "events.jsonl", "a") as f:
            f.write(_lines(range(2000, 2010)))
        written += range(2000, 2010)
        _assert_exactly(_read_back(kafka_bootstrap, out, w, len(written)), written)
        assert w.terminate() == 0, w.log()[-3000:]
        positions = read_committed(kafka_bootstrap, f"{app_id}-source-offsets")
        last = json.loads(positions[-1].value)
        assert len(last["files"]) == 2, f"the position still tracks gone files: {last}"
    finally:
        w.stop_quietly()


def test_a_line_longer_than_a_read_chunk_goes_through(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A 3 MiB line (the read chunk is 1 MiB) with producer and topic limits that allow it."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_text(_lines(range(0, 5)) + _lines(range(5, 6), pad=3 << 20)
                                    + _lines(range(6, 10)))  # fmt: skip
    (folder / "b.jsonl").write_text(_lines(range(10, 20)))
    app_id, out = unique_name("flong"), unique_name("flong-out")
    create_topic(kafka_bootstrap, out, 1, config={"max.message.bytes": str(8 << 20)})
    env = {"TEST_APP_ID": app_id, "TEST_SOURCE_DIR": str(folder), "TEST_OUTPUT": out,
           "EOKAFKA_CONFIG": f"producer.message.max.bytes={8 << 20}"}  # fmt: skip
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "a"]).start()
    try:
        records = read_committed(kafka_bootstrap, out, expected_count=20, timeout=LIVENESS)
        values = {json.loads(r.value)["id"]: json.loads(r.value) for r in records}
        assert sorted(values) == list(range(20)) and len(records) == 20
        assert len(values[5]["pad"]) == 3 << 20
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()

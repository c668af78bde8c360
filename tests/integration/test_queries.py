"""Interactive queries against real worker processes on a real broker (invariant 14).

A running total per key (tests.apps.totals). Every answer is checked against an independent
reference built from the input records as read back from the broker: the total of a key
over its input partition's records below the input offset the answer says it reflects. An
answer that showed the open transaction's writes, or a rolled-back one, would carry a total
that no committed offset gives.
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

import pytest
import requests

from eokafka.runtime.query.owners import key_partition
from tests.integration.harness import WorkerProcess, app_topics, wait_for, worker
from tests.integration.test_operations import _free_port
from tests.kafka_helpers import (
    Record,
    end_offsets,
    produce_records,
    read_committed,
)
from tests.totals_reference import check_running_totals

pytestmark = pytest.mark.integration
TARGET = "tests.apps.totals:app"
STORE = "totals"
PARTITIONS = 6
KEYS = 24
SESSION = ["-c", "consumer.session.timeout.ms=6000"]
# Liveness bounds, not performance figures: a loaded 2-core machine may be slow.
SETTLE_S = 120
HTTP_S = 20
PAUSE_ID = 999_999
STOPPED_PROBE_S = 2  # a probe's timeout; a SIGSTOPped worker never answers within any


class Node:
    """One worker process and its query server's address."""

    def __init__(self, name: str, proc: WorkerProcess, port: int) -> None:
        self.name, self.proc, self.port = name, proc, port
        self.url = f"http://127.0.0.1:{port}"
        self.verify: str | bool = True  # a CA file for https

    def get(self, path: str, token: str | None = None) -> requests.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return requests.get(self.url + path, headers=headers, timeout=HTTP_S, verify=self.verify)

    def key(self, key: str) -> requests.Response:
        return self.get(f"/v1/stores/{STORE}/keys/{key}")


def _nodes(
    bootstrap: str,
    tmp: Path,
    env: dict[str, str],
    names: list[str],
    extra: list[str] | None = None,
    protocol: str = "classic",
) -> list[Node]:
    out = []
    for name in names:
        port = _free_port()
        node_env = {**env, "EOKAFKA_HTTP_PORT": str(port)}
        session = SESSION if protocol == "classic" else []  # KIP-848: the broker's timeout
        args = ["--instance-id", name, *session, *(extra or [])]
        out.append(Node(name, worker(TARGET, bootstrap, tmp, name, node_env, args), port))
    return out


def _inputs(n: int, seed: int, first_id: int = 0) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    return [
        (f"k{rng.randrange(KEYS)}".encode(),
         json.dumps({"id": first_id + i, "amount": rng.randint(1, 9)}).encode())
        for i in range(n)
    ]  # fmt: skip


Reference = dict[tuple[bytes, int], list[tuple[int, int]]]


def _reference(records: list[Record]) -> Reference:
    """(key, input partition) -> [(offset after the record, total through it)], ascending."""
    out: dict[tuple[bytes, int], list[tuple[int, int]]] = defaultdict(list)
    running: dict[bytes, int] = defaultdict(int)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert r.key is not None and r.value is not None
        running[r.key] += json.loads(r.value)["amount"]
        out[(r.key, r.partition)].append((r.offset + 1, running[r.key]))
    return out


def _total_below(ref: list[tuple[int, int]], offset: int) -> int:
    """The key's total over its partition's records below ``offset``."""
    total = 0
    for after, running in ref:
        if after > offset:
            break
        total = running
    return total


def _check_answer(
    answer: dict[str, object], key: str, src: str, ref: Reference) -> None:
    partition = answer["partition"]
    assert partition == key_partition(key.encode(), PARTITIONS), answer
    offsets = answer["input_offsets"]
    assert isinstance(offsets, dict) and isinstance(partition, int)
    offset = offsets[f"{src}[{partition}]"]  # None: nothing committed yet
    want = _total_below(ref.get((key.encode(), partition), []), offset or 0)
    got = answer["value"] if answer["found"] else 0
    assert got == want, (
        f"{key}: answered {got} as of input offset {offset} of partition {partition}, but the "
        f"committed inputs below that offset total {want}: {answer}"
    )


def _answers(node: Node, keys: list[str]) -> dict[str, dict[str, object]] | None:
    """Every key's answer from ``node``, or None while any is refused (503)."""
    out = {}
    for key in keys:
        got = node.key(key)
        if got.status_code == 503:
            assert got.headers.get("Retry-After"), got.text
            return None
        assert got.status_code == 200, f"{node.name} {key}: {got.status_code} {got.text}"
        out[key] = got.json()
    return out


def _ready(nodes: list[Node]) -> bool:
    try:
        return all(n.get("/readyz").status_code == 200 for n in nodes)
    except requests.ConnectionError:
        return False


def _stop_all(nodes: list[Node]) -> None:
    for n in nodes:
        n.proc.stop_quietly()


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_any_worker_answers_any_key_with_its_last_committed_total(
    kafka_bootstrap: str, tmp_path: Path, protocol: str
) -> None:
    """Under both group protocols: the owner of a partition is read from the group's
    description either way (KIP-848 groups describe their members' assignments too)."""
    names = app_topics(kafka_bootstrap, "query", PARTITIONS)
    inputs = _inputs(400, seed=1)
    produce_records(kafka_bootstrap, names.src, inputs)
    extra = [] if protocol == "classic" else ["-c", "group.protocol=consumer"]
    nodes = _nodes(kafka_bootstrap, tmp_path, names.env, ["q0", "q1", "q2"], extra, protocol)
    try:
        for n in nodes:
            n.proc.start()
        outputs = read_committed(kafka_bootstrap, names.out, len(inputs), timeout=SETTLE_S)
        final = check_running_totals(inputs, outputs)
        wait_for(lambda: _ready(nodes), SETTLE_S, "every worker ready")
        ins = read_committed(kafka_bootstrap, names.src)
        ref = _reference(ins)
        in_end = end_offsets(kafka_bootstrap, names.src)
        log_end = end_offsets(kafka_bootstrap, f"{names.app_id}-{STORE}-changelog")
        keys = sorted(final)
        forwarded = 0
        for n in nodes:
            answers: dict[str, dict[str, object]] = {}

            def answered(n: Node = n, answers: dict[str, dict[str, object]] = answers) -> bool:
                got = _answers(n, keys)
                if got is not None:
                    answers.update(got)
                return got is not None

            wait_for(answered, SETTLE_S, f"{n.name} answering every key")
            for key, answer in answers.items():
                p = key_partition(key.encode(), PARTITIONS)
                assert answer["found"] and answer["value"] == final[key], (key, answer)
                assert answer["partition"] == p
                assert answer["input_offsets"] == {f"{names.src}[{p}]": in_end[p]}, answer
                assert answer["changelog_offset"] == log_end[p], (answer, log_end)
                _check_answer(answer, key, names.src, ref)
                served = answer["served_by"]
                assert isinstance(served, dict)
                forwarded += served["instance"] != n.name
        assert forwarded > 0, "no answer came from another worker than the one asked"
        absent = nodes[0].key("no-such-key").json()
        assert absent["found"] is False and absent["value"] is None
    finally:
        _stop_all(nodes)


def _node_of_pid(nodes: list[Node], pid: int) -> Node:
    return next(n for n in nodes if n.proc.proc is not None and n.proc.proc.pid == pid)


def test_answers_during_rebalances_and_kills_are_committed_states(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A worker joins, one is SIGKILLed while its processor holds an open transaction with a
    store write in it (rolled back, then replayed by the partition's next owner), another is
    SIGKILLed and restarted at once; all the while four threads ask random workers for keys."""
    names = app_topics(kafka_bootstrap, "query-storm", PARTITIONS)
    produce_records(kafka_bootstrap, names.src, _inputs(200, seed=2))
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {**names.env, "TEST_PAUSE_IDS": str(PAUSE_ID), "TEST_PAUSE_DIR": str(pause)}
    nodes = _nodes(kafka_bootstrap, tmp_path, env, ["s0", "s1", "s2"])
    answers: list[tuple[str, dict[str, object]]] = []
    refusals: dict[str, int] = defaultdict(int)
    done = threading.Event()
    failures: list[BaseException] = []

    def feed() -> None:
        batch = 0
        try:
            while not done.is_set():
                batch += 1
                chunk = _inputs(20, seed=100 + batch, first_id=10_000 * batch)
                produce_records(kafka_bootstrap, names.src, chunk)
                done.wait(0.05)  # pacing of a steady input rate
        except BaseException as exc:  # surfaced in the test thread
            failures.append(exc)

    def ask(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not done.is_set():
                node = rng.choice(nodes)
                key = f"k{rng.randrange(KEYS)}"
                try:
                    got = node.key(key)
                except requests.RequestException:
                    refusals["unreachable"] += 1
                    continue
                if got.status_code == 200:
                    answers.append((key, got.json()))
                else:
                    assert got.status_code == 503 and got.headers.get("Retry-After"), got.text
                    refusals["503"] += 1
        except BaseException as exc:  # surfaced in the test thread
            failures.append(exc)

    threads = [threading.Thread(target=feed, daemon=True)]
    threads += [threading.Thread(target=ask, args=(seed,), daemon=True) for seed in range(4)]
    try:
        nodes[0].proc.start()
        nodes[1].proc.start()
        wait_for(lambda: _ready(nodes[:2]), SETTLE_S, "two workers ready")
        for thread in threads:
            thread.start()
        nodes[2].proc.start()  # a rebalance: a third worker joins
        wait_for(lambda: _ready(nodes), SETTLE_S, "three workers ready")
        paused = pause / f"paused-{PAUSE_ID}"
        held = json.dumps({"id": PAUSE_ID, "amount": 5}).encode()
        produce_records(kafka_bootstrap, names.src, [(b"k1", held)])
        wait_for(paused.exists, SETTLE_S, "a processor holding its transaction open")
        wait_for(lambda: paused.read_text() != "", SETTLE_S, "the paused worker's pid")
        victim = _node_of_pid(nodes, int(paused.read_text()))
        victim.proc.kill()  # its open transaction, store writes included, is rolled back
        rest = [n for n in nodes if n is not victim]
        wait_for(lambda: _ready(rest), SETTLE_S, "the survivors ready")
        victim.proc.start()  # back with the same instance id
        rest[0].proc.kill()
        rest[0].proc.start()
        wait_for(lambda: _ready(nodes), SETTLE_S, "all three ready again")
        count = len(answers)
        wait_for(lambda: len(answers) > count + 20, SETTLE_S, "answers after the storm")
        done.set()
        for thread in threads:
            thread.join(60)
        assert not failures, failures
        ins = read_committed(kafka_bootstrap, names.src)
        outputs = read_committed(kafka_bootstrap, names.out, len(ins), timeout=SETTLE_S)
        ref = _reference(ins)
        check_running_totals([(r.key, r.value) for r in ins], outputs)  # type: ignore[misc]
        assert answers, f"no answer at all ({dict(refusals)})"
        for key, answer in answers:
            _check_answer(answer, key, names.src, ref)
        print(f"{len(answers)} answers checked, refusals {dict(refusals)}")
    finally:
        done.set()
        _stop_all(nodes)


def test_readyz_waits_for_a_restoring_task_and_healthz_for_a_blocked_loop(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A store whose files another process holds keeps its task restoring: not ready until
    it is let go. A processor that blocks the loop makes the worker unhealthy; a worker
    SIGSTOPped from outside answers nothing."""
    from eokafka.state import RocksBackend, store_dir

    names = app_topics(kafka_bootstrap, "query-ready", 2)
    produce_records(kafka_bootstrap, names.src, _inputs(40, seed=4), partition=0)
    produce_records(kafka_bootstrap, names.src, _inputs(10, seed=5, first_id=100), partition=1)
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {
        **names.env, "TEST_BACKEND": "rocksdb", "TEST_PAUSE_IDS": "200",
        "TEST_PAUSE_DIR": str(pause), "EOKAFKA_TRANSACTION_TIMEOUT_MS": "3000",
    }  # fmt: skip
    (node,) = _nodes(kafka_bootstrap, tmp_path, env, ["r0"])
    holder = RocksBackend(store_dir(tmp_path / "state", names.app_id, STORE, 0) / "rocksdb")
    holder.checkpoint()  # opens the files: the worker can't until the holder lets go
    try:
        node.proc.start()

        def restoring() -> bool:
            try:
                got = node.get("/readyz")
            except requests.ConnectionError:
                return False
            states = {t["partition"]: t["state"] for t in got.json()["tasks"]}
            return got.status_code == 503 and states.get(0) == "restoring"

        wait_for(restoring, SETTLE_S, "readyz: not ready, task 0 restoring")
        assert node.get("/healthz").status_code == 200
        assert node.key("k1").status_code in (200, 503)
        holder.close()
        wait_for(lambda: node.get("/readyz").status_code == 200, SETTLE_S, "readyz: ready")
        read_committed(kafka_bootstrap, names.out, 50, timeout=SETTLE_S)

        produce_records(kafka_bootstrap, names.src, [(b"k1", b'{"id": 200, "amount": 1}')])
        wait_for((pause / "paused-200").exists, SETTLE_S, "the processor blocking the loop")
        wait_for(lambda: node.get("/healthz").status_code == 503, SETTLE_S, "healthz: unhealthy")
        (pause / "release").touch()
        wait_for(lambda: node.get("/healthz").status_code == 200, SETTLE_S, "healthz: healthy")

        assert node.proc.proc is not None
        pid = node.proc.proc.pid
        os.kill(pid, signal.SIGSTOP)  # a stopped process answers nothing: a probe times out
        try:
            with pytest.raises(requests.Timeout):
                requests.get(node.url + "/healthz", timeout=STOPPED_PROBE_S)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: node.get("/healthz").status_code == 200, SETTLE_S, "healthz after it")
    finally:
        holder.close()
        node.proc.stop_quietly()


def test_the_cli_and_the_client_find_a_worker_in_the_group_and_carry_the_token(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from eokafka.config import Settings
    from eokafka.query import QueryClient

    names = app_topics(kafka_bootstrap, "query-cli", 2)
    inputs = _inputs(60, seed=6)
    produce_records(kafka_bootstrap, names.src, inputs)
    token = "t0ken-" + names.app_id
    env = {**names.env, "EOKAFKA_HTTP_TOKEN": token}
    (node,) = _nodes(kafka_bootstrap, tmp_path, env, ["c0"])
    try:
        node.proc.start()
        outputs = read_committed(kafka_bootstrap, names.out, len(inputs), timeout=SETTLE_S)
        final = check_running_totals(inputs, outputs)
        wait_for(lambda: _ready([node]), SETTLE_S, "the worker ready")
        assert node.key("k1").status_code == 401
        assert node.get("/healthz").status_code == 200  # probes need no token

        cli_env = {**os.environ, **env}
        cli_env.pop("EOKAFKA_TEST_BOOTSTRAP", None)
        base = [sys.executable, "-m", "eokafka", "query", TARGET, STORE]
        one = subprocess.run(
            [*base, "k1", "--bootstrap-servers", kafka_bootstrap],
            env=cli_env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert one.returncode == 0, one.stderr
        assert json.loads(one.stdout)["value"] == final["k1"]
        listed = subprocess.run(
            [*base, "--prefix", "k1", "--bootstrap-servers", kafka_bootstrap],
            env=cli_env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        items = [json.loads(line) for line in listed.stdout.splitlines()]
        want = {k: v for k, v in final.items() if k.startswith("k1")}
        assert {i["key"]: i["value"] for i in items} == want

        settings = Settings(names.app_id, bootstrap_servers=kafka_bootstrap, http_token=token)
        client = QueryClient.for_app(settings)
        assert client.urls == [node.url]  # found in the group's description
        assert client.get(STORE, "k2")["value"] == final["k2"]
        assert {i["key"]: i["value"] for i in client.items(STORE)} == final
        assert token not in node.proc.log()
    finally:
        node.proc.stop_quietly()


def test_a_keys_open_windows_match_the_windowed_output(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Tumbling windows of 1 s (grace 300 ms), counted, every update emitted: each key's open
    window answers the count of its last committed update; closed windows left the store, and
    the answer says up to where (its partition's stream time minus the grace)."""
    names = app_topics(kafka_bootstrap, "query-win", 2)
    keys = [f"k{i}" for i in range(4)]
    inputs = [
        (keys[i % 4].encode(), json.dumps({"ts": i * 10, "v": 1}).encode()) for i in range(300)
    ]  # event time ascending: the last window [2000, 3000) stays open, earlier ones close
    produce_records(kafka_bootstrap, names.src, inputs)
    env = {**names.env, "TEST_WINDOW": "tumbling", "TEST_AGG": "count", "TEST_EMIT": "update",
           "TEST_TS_FIELD": "1", "EOKAFKA_HTTP_PORT": str(_free_port())}  # fmt: skip
    proc = worker("tests.apps.window_apps:app", kafka_bootstrap, tmp_path, "w0", env)
    node = Node("w0", proc, int(env["EOKAFKA_HTTP_PORT"]))
    try:
        proc.start()
        outputs = read_committed(kafka_bootstrap, names.out, len(inputs), timeout=SETTLE_S)
        last: dict[tuple[bytes, int, int], int] = {}
        for r in outputs:  # windowed key: key bytes, then start and end as int64
            assert r.key is not None and r.value is not None
            k, start, end = r.key[:-16], *struct.unpack(">qq", r.key[-16:])
            last[(k, start, end)] = json.loads(r.value)
        wait_for(lambda: _ready([node]), SETTLE_S, "the worker ready")
        stream_time: dict[int, int] = defaultdict(lambda: -1)  # partition -> max event time
        for r in read_committed(kafka_bootstrap, names.src):
            assert r.value is not None
            stream_time[r.partition] = max(stream_time[r.partition], json.loads(r.value)["ts"])
        for key in keys:
            got = node.get(f"/v1/stores/agg/windows/{key}?from=0")
            assert got.status_code == 200, got.text
            answer = got.json()
            want = sum(1 for k, v in inputs if k == key.encode() and json.loads(v)["ts"] >= 2000)
            assert answer["windows"] == [{"start": 2000, "end": 3000, "value": want}], answer
            assert last[(key.encode(), 2000, 3000)] == want
            now = stream_time[answer["partition"]]
            assert (answer["stream_time"], answer["closed_through"]) == (now, now - 300), answer
            assert answer["complete"] is False and "output topic" in answer["note"]
            early = node.get(f"/v1/stores/agg/windows/{key}?from=0&to=2000").json()
            assert early["windows"] == [] and early["complete"] is False
            open_only = node.get(f"/v1/stores/agg/windows/{key}?from={now - 300}").json()
            assert open_only["complete"] is True and open_only["windows"] == answer["windows"]
    finally:
        proc.stop_quietly()


def test_a_standby_answers_a_stale_read_with_its_lag(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Two workers, one standby replica per partition: asked with ?stale=1 for a key of the
    other worker's partition, a worker answers from its warm copy, saying so and its lag; the
    copy catches up with the committed total. Without it, the owner answers."""
    names = app_topics(kafka_bootstrap, "query-stale", 2)
    inputs = _inputs(100, seed=8)
    produce_records(kafka_bootstrap, names.src, inputs)
    env = {**names.env, "TEST_STANDBYS": "1"}
    nodes = _nodes(kafka_bootstrap, tmp_path, env, ["t0", "t1"])
    try:
        for n in nodes:
            n.proc.start()
        outputs = read_committed(kafka_bootstrap, names.out, len(inputs), timeout=SETTLE_S)
        final = check_running_totals(inputs, outputs)
        wait_for(lambda: _ready(nodes), SETTLE_S, "both workers ready")
        asked = nodes[0]
        fresh: dict[str, dict[str, object]] = {}

        def owner_elsewhere() -> bool:
            for key in sorted(final):
                got = asked.key(key)
                if got.status_code == 200 and got.json()["served_by"]["instance"] != asked.name:
                    fresh[key] = got.json()
                    return True
            return False

        wait_for(owner_elsewhere, SETTLE_S, "a key the other worker owns")
        (key, owned), = fresh.items()
        assert owned["value"] == final[key] and "standby" not in owned
        stale: dict[str, object] = {}

        def caught_up() -> bool:
            got = asked.get(f"/v1/stores/{STORE}/keys/{key}?stale=1")
            assert got.status_code == 200, got.text
            stale.update(got.json())
            return stale["lag"] == 0 and stale["value"] == final[key]

        wait_for(caught_up, SETTLE_S, f"the standby of {key} caught up: {stale}")
        assert stale["standby"] is True and stale["partition"] == owned["partition"]
        served = stale["served_by"]
        assert isinstance(served, dict) and served["instance"] == asked.name
    finally:
        _stop_all(nodes)

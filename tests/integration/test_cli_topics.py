"""``eokafka topics``: create, list, describe, delete, and every topic an app needs.

Real commands against the broker; what they did is checked with plain confluent-kafka
clients (tests/kafka_helpers.py), and every successful command prints nothing on stderr.
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, ConfigResource

from tests.integration.cli import app_env, eokafka
from tests.integration.harness import wait_for
from tests.kafka_helpers import create_topic, topic_partitions, unique_name

APP = "tests.apps.cli_apps:app"


def _exists(bootstrap: str, topic: str) -> bool:
    return topic in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30).topics


def _config(bootstrap: str, topic: str, key: str) -> str:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_configs([resource])[resource].result(30)[key].value


def test_create_list_describe_delete(kafka_bootstrap: str) -> None:
    a, b = unique_name("cli-topic-a"), unique_name("cli-topic-b")
    done = eokafka(
        "topics", "create", a, b, "--partitions", "3", "--topic-config", "retention.ms=-1",
        bootstrap=kafka_bootstrap,
    )  # fmt: skip
    assert (done.code, done.err) == (0, ""), done
    assert done.out.splitlines() == [
        f"created topic {a} with 3 partitions",
        f"created topic {b} with 3 partitions",
    ]
    assert topic_partitions(kafka_bootstrap, a) == [0, 1, 2]
    assert _config(kafka_bootstrap, b, "retention.ms") == "-1"

    done = eokafka("topics", "list", bootstrap=kafka_bootstrap)
    assert (done.code, done.err) == (0, ""), done
    rows = {line.split()[0]: line.split()[1:] for line in done.out.splitlines()[1:]}
    assert rows[a] == ["3", "1"] and rows[b] == ["3", "1"]
    assert not any(name.startswith("__") for name in rows)

    done = eokafka("topics", "describe", a, bootstrap=kafka_bootstrap)
    assert (done.code, done.err) == (0, ""), done
    lines = done.out.splitlines()
    assert lines[0].startswith(f"topic {a}: 3 partitions, replication factor 1, id ")
    assert [line.split(":")[0].strip() for line in lines[1:4]] == [
        "partition 0", "partition 1", "partition 2"
    ]
    assert "offsets 0..0 (0 kept)" in lines[1]
    assert lines[-1] == "configs set on the topic: retention.ms=-1"

    again = eokafka("topics", "create", a, bootstrap=kafka_bootstrap)
    assert again.code == 1 and again.out == "", again
    assert again.error_lines == [
        f"error: could not create topic '{a}': Topic '{a}' already exists. "
        "(TOPIC_ALREADY_EXISTS)"
    ]
    quiet = eokafka("topics", "create", a, "--if-not-exists", bootstrap=kafka_bootstrap)
    assert (quiet.code, quiet.err) == (0, ""), quiet

    done = eokafka("topics", "delete", a, b, bootstrap=kafka_bootstrap)
    assert (done.code, done.err) == (0, ""), done
    assert done.out.splitlines() == [f"deleted topic {a}", f"deleted topic {b}"]
    wait_for(lambda: not _exists(kafka_bootstrap, a), 30, f"{a} to be gone")
    gone = eokafka("topics", "describe", a, bootstrap=kafka_bootstrap)
    assert gone.code == 1 and gone.error_lines[0].startswith(
        f"error: topic '{a}' does not exist: create it with `eokafka topics create {a}"
    ), gone
    missing = eokafka("topics", "delete", a, bootstrap=kafka_bootstrap)
    assert (missing.code, missing.error_lines) == (1, [f"error: topic '{a}' does not exist"])


def test_broker_refusals_are_one_line(kafka_bootstrap: str) -> None:
    name = unique_name("cli-refused")
    done = eokafka(
        "topics", "create", name, "--replication-factor", "3", bootstrap=kafka_bootstrap
    )
    assert done.code == 1 and len(done.error_lines) == 1, done
    assert done.err.startswith(f"error: could not create topic '{name}': ")
    assert done.err.rstrip().endswith("(INVALID_REPLICATION_FACTOR)")
    done = eokafka(
        "topics", "create", name, "--topic-config", "no.such.config=1", bootstrap=kafka_bootstrap
    )
    assert done.code == 1, done
    assert done.error_lines == [
        f"error: could not create topic '{name}': Unknown topic config name: no.such.config "
        "(INVALID_CONFIG)"
    ]
    assert not _exists(kafka_bootstrap, name)
    neither = eokafka("topics", "create", bootstrap=kafka_bootstrap)
    assert neither.error_lines == [
        "error: name the topics to create, or give --for module:app (not both)"
    ]


def test_create_for_an_app_gives_co_partitioned_inputs_one_count(kafka_bootstrap: str) -> None:
    env = app_env("cli-for")
    create_topic(kafka_bootstrap, env["TEST_INPUT"], 3)
    done = eokafka("topics", "create", "--for", APP, bootstrap=kafka_bootstrap, env=env)
    assert (done.code, done.err) == (0, ""), done
    assert done.out.splitlines() == [
        f"input topic {env['TEST_INPUT']}: exists, 3 partitions",
        f"created input topic {env['TEST_INPUT2']} with 3 partitions (like "
        f"{env['TEST_INPUT']}, with which it shares a store)",
        f"created output topic {env['TEST_OUTPUT']} with 3 partitions (as the app's existing "
        "inputs)",
    ]
    for topic in ("TEST_INPUT2", "TEST_OUTPUT"):
        assert topic_partitions(kafka_bootstrap, env[topic]) == [0, 1, 2]
    # Nothing left to create: it says what exists, and succeeds.
    again = eokafka("topics", "create", "--for", APP, bootstrap=kafka_bootstrap, env=env)
    assert (again.code, again.err) == (0, ""), again
    assert all(": exists, 3 partitions" in line for line in again.out.splitlines())


def test_create_for_an_app_refuses_inputs_that_are_not_co_partitioned(
    kafka_bootstrap: str,
) -> None:
    env = app_env("cli-for-bad")
    create_topic(kafka_bootstrap, env["TEST_INPUT"], 3)
    create_topic(kafka_bootstrap, env["TEST_INPUT2"], 2)
    done = eokafka("topics", "create", "--for", APP, bootstrap=kafka_bootstrap, env=env)
    assert (done.code, done.out) == (1, ""), done
    first, second = sorted([env["TEST_INPUT"], env["TEST_INPUT2"]])
    counts = {env["TEST_INPUT"]: "3 partitions", env["TEST_INPUT2"]: "2 partitions"}
    assert done.error_lines == [
        f"error: input topics {first} ({counts[first]}), {second} ({counts[second]}) share a "
        "store, so partition p of each belongs to one task: they need the same partition "
        "count. Re-create the smaller ones (or repartition them into new topics) with the "
        "same count"
    ]
    assert not _exists(kafka_bootstrap, env["TEST_OUTPUT"])
    wrong = eokafka(
        "topics", "create", "--for", "tests.apps.cli_apps:nope", bootstrap=kafka_bootstrap
    )
    assert wrong.error_lines == [
        "error: 'tests.apps.cli_apps:nope': tests.apps.cli_apps (tests/apps/cli_apps.py) has "
        "no attribute 'nope'; the Apps in tests.apps.cli_apps: app"
    ], wrong

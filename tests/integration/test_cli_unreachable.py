"""Every command that talks to the cluster, against an address where nothing listens: one
line naming the address, what failed and the setting to check, and its exit code.

The commands run side by side (each waits for the cluster for seconds), started as a user
starts them, with ``EOKAFKA_BOOTSTRAP_SERVERS`` pointing nowhere.
"""

from __future__ import annotations

from tests.integration.cli import eokafka, finish, start
from tests.integration.test_operations import _free_port

APP = "tests.apps.cli_apps:app"
COMMANDS: dict[str, tuple[list[str], int]] = {
    "topics list": (["topics", "list"], 1),
    "topics describe": (["topics", "describe", "t"], 1),
    "topics create": (["topics", "create", "t", "--partitions", "2"], 1),
    "topics create --for": (["topics", "create", "--for", APP], 1),
    "topics delete": (["topics", "delete", "t"], 1),
    "produce": (["produce", "t"], 1),
    "consume": (["consume", "t", "--until-end"], 1),
    "reset": (["reset", APP], 1),
    "run": (["run", APP], 1),
    "run --until-end": (["run", APP, "--until-end"], 1),
    "verify": (["verify", "t", "kafka:u"], 2),
    "query": (["query", APP, "counts", "k"], 1),
}


def test_every_command_says_the_cluster_is_unreachable_in_one_line(
    kafka_bootstrap: str,  # not used: the point is an address where no broker is
) -> None:
    address = f"127.0.0.1:{_free_port()}"
    running = {}
    for name, (args, _) in COMMANDS.items():
        extra = ["--bootstrap-servers", address] if name == "verify" else []
        running[name] = start([*args, *extra], address, stdin='{"value": 1}\n')
    done = {name: finish(proc) for name, proc in running.items()}
    for name, (_, code) in COMMANDS.items():
        result = done[name]
        assert result.code == code, f"{name}: {result}"
        assert result.out == "", f"{name}: {result}"
        assert len(result.error_lines) == 1, f"{name}: {result}"
        line = result.error_lines[0]
        assert line.startswith(
            f"error: could not reach a Kafka broker at {address} (PLAINTEXT) within 10s: "
        ), f"{name}: {line}"
        assert "Connection refused" in line and "Check bootstrap_servers" in line, line
        assert "Traceback" not in result.err


def test_describe_needs_no_broker(kafka_bootstrap: str) -> None:
    done = eokafka("describe", APP, bootstrap=f"127.0.0.1:{_free_port()}")
    assert (done.code, done.err) == (0, ""), done
    assert "processor count" in done.out

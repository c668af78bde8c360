"""Two workers of a test app that stop mid-transaction at chosen values (the app reads
``TEST_JOIN_PAUSES``, tests/apps/eos_copy.py's ``_pause_once``), and the SIGKILL there."""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import WorkerProcess, wait_for, worker


def pausing_workers(
    target: str, bootstrap: str, tmp: Path, env: dict[str, str], pauses: list[str]
) -> tuple[dict[str, WorkerProcess], Path]:
    """Workers w0 and w1, started; pause ``n`` stops at the value ``pauses[n]``."""
    pause_dir = tmp / "pause"
    pause_dir.mkdir()
    env = {**env, "TEST_JOIN_PAUSES": ",".join(pauses), "TEST_PAUSE_DIR": str(pause_dir)}
    workers = {
        n: worker(target, bootstrap, tmp, n, env, ["--instance-id", n]) for n in ("w0", "w1")
    }
    # w1 once w0 has created the internal topics: two workers creating a dozen topics at
    # once on a loaded broker can time out waiting for their metadata (runtime/topics.py).
    workers["w0"].start()
    wait_for(lambda: " assigned " in workers["w0"].log() or bool(dead(workers)), 120, "w0")
    workers["w1"].start()
    return workers, pause_dir


def dead(workers: dict[str, WorkerProcess]) -> str:
    """The log tail of a worker that exited on its own, or ''."""
    return next((w.log()[-3000:] for w in workers.values() if not w.alive), "")


def kill_at_pause(pause_dir: Path, n: int, workers: dict[str, WorkerProcess]) -> None:
    """SIGKILL the worker that stopped mid-transaction at pause ``n``; start it again."""
    marker = pause_dir / f"paused-{n}"
    wait_for(
        lambda: (marker.exists() and bool(marker.read_text())) or bool(dead(workers)),
        120,
        f"pause {n}",
    )
    assert not dead(workers), dead(workers)
    pid = int(marker.read_text())
    victim = next(w for w in workers.values() if w.proc and w.proc.pid == pid)
    victim.kill()
    victim.start()  # same instance id: fences the dead one's transaction at once

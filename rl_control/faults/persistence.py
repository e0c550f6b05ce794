"""Persistence fault scenarios: a disk that fills up during a checkpoint, and pickle payloads in run files.

Both drive the learner's persistence (:class:`~rl_control.learning.Learner`, the code learner_node runs)
in-process: the fault is in the file system, not in a process. The disk is a real tmpfs of a few MiB
(``mount -t tmpfs``, which needs root; without it the scenario reports that it could not run).
"""

from __future__ import annotations

import errno
import io
import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_control.faults import ScenarioContext, ScenarioResult, scenario
from rl_control.faults.learner import BATCH, pendulum_transitions
from rl_control.learning import Learner, preset_config
from rl_control.learning.checkpoint import RunDirectory, sha256
from rl_control.transitions import FIELDS

DISK_SIZE = "3m"
AGENT = {"hidden_sizes": [32, 32], "batch_size": 32, "learning_starts": 50, "buffer_capacity": 5000}


def small_learner(run_dir: Path) -> Learner:
    """A pendulum-sized SAC learner in ``run_dir`` (resumed when it holds checkpoints)."""
    return Learner.create_or_resume(run_dir, 3, 1, preset_config("sac", **AGENT), seed=1)


def feed(learner: Learner, seqs: range) -> None:
    """Add the pendulum transitions of messages ``seqs`` and train on them."""
    for seq in seqs:
        learner.add_transitions(pendulum_transitions(seq))
        learner.train(BATCH)


@contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[str]:
    """Mount a tmpfs of ``size`` at ``mount_point``; yields ``""``, or why it could not be mounted."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        yield "" if mounted.returncode == 0 else (mounted.stderr.strip() or f"exit {mounted.returncode}")
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(mount_point)], capture_output=True, check=False)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until the file system is full; returns it."""
    filler = directory / "filler.bin"
    block = b"\0" * 65536
    with filler.open("wb") as stream:
        try:
            while True:
                stream.write(block)
                stream.flush()
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
    return filler


@scenario("persistence_disk_full_checkpoint")
def disk_full_checkpoint(context: ScenarioContext) -> ScenarioResult:
    """A checkpoint on a full disk fails with ENOSPC naming the file and leaves no partial file; a restart
    on the full disk resumes the committed checkpoint or is refused naming the file; once space is freed
    the running learner checkpoints everything it holds."""
    with tmpfs(context.workdir / "disk", DISK_SIZE) as problem:
        if problem:
            return ScenarioResult(f"not measured: cannot mount a tmpfs ({problem})", held=False)
        run_dir = context.workdir / "disk" / "run"
        learner = small_learner(run_dir)
        feed(learner, range(4))
        learner.save_checkpoint()
        committed = learner.env_steps
        filler = fill(run_dir.parent)
        feed(learner, range(4, 8))
        failure = error_text(learner.save_checkpoint)
        leftovers = [path.name for path in run_dir.rglob("*.tmp")]
        resumed: list[int] = []
        restart = error_text(lambda: resumed.append(small_learner(run_dir).env_steps))
        filler.unlink()
        learner.save_checkpoint()
        after = small_learner(run_dir)
        recovered = (after.env_steps, after.replay.total_added) == (
            learner.env_steps,
            learner.replay.total_added,
        )
    named = "ENOSPC" in failure and str(run_dir) in failure
    restart_ok = resumed == [committed] or ("ENOSPC" in restart and str(run_dir) in restart)
    held = named and not leftovers and restart_ok and recovered
    restarted = f"resumed {resumed[0]} steps" if resumed else f"refused: {restart}"
    figure = (
        f"checkpoint on a full {DISK_SIZE} tmpfs: {failure or 'NO ERROR'}; {len(leftovers)} partial files; "
        f"restart on the full disk {restarted} (committed {committed}); after freeing space the running "
        f"learner's checkpoint resumes {after.env_steps} of {learner.env_steps} steps"
    )
    values = {
        "named": float(named),
        "leftovers": float(len(leftovers)),
        "restart_ok": float(restart_ok),
        "committed_env_steps": float(committed),
        "recovered": float(recovered),
    }
    return ScenarioResult(figure, held=held, values=values)


def error_text(action: Callable[[], object]) -> str:
    """``""`` if ``action()`` succeeds, else its OSError as ``ENOSPC: <message>``."""
    try:
        action()
    except OSError as error:
        return f"{errno.errorcode.get(error.errno or 0, '?')}: {error.strerror}"
    return ""


class PicklePayload:
    """Unpickling this creates ``marker`` (the proof that a payload ran)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def recommit(manifest_path: Path, file_name: str, data: bytes, chunk: bool) -> None:
    """Write ``data`` as the manifest's state file (or its first replay chunk) with a matching checksum:
    an attacker who can write the run directory can forge the manifest too."""
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["replay_chunks"][0] if chunk else manifest
    entry["sha256"], entry["size"] = sha256(data), len(data)
    (manifest_path.parent.parent / file_name if chunk else manifest_path.parent / file_name).write_bytes(data)
    manifest_path.write_text(json.dumps(manifest))


def pickled_chunk(marker: Path) -> bytes:
    """A transition chunk whose ``obs`` array is a pickled object array carrying a payload."""
    batch = pendulum_transitions(0)
    arrays: dict[str, Any] = {name: getattr(batch, name) for name in FIELDS}
    arrays["obs"] = np.array([PicklePayload(marker)], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@scenario("persistence_pickle_payloads")
def pickle_payloads(context: ScenarioContext) -> ScenarioResult:
    """A checkpoint state and a replay chunk replaced by pickle payloads (checksums forged): neither runs;
    each is refused naming the file, and the learner resumes from what is intact."""
    run_dir = context.workdir / "run"
    marker = context.workdir / "payload_ran"
    learner = small_learner(run_dir)
    feed(learner, range(4))
    learner.save_checkpoint()
    older = learner.env_steps
    feed(learner, range(4, 8))
    learner.save_checkpoint()
    run = RunDirectory(run_dir)
    newest, oldest = run.manifests()[0], run.manifests()[-1]
    state = io.BytesIO()
    torch.save({"agent": PicklePayload(marker)}, state)
    recommit(newest, json.loads(newest.read_text())["state_file"], state.getvalue(), chunk=False)
    chunk_file = json.loads(oldest.read_text())["replay_chunks"][0]["file"]
    recommit(oldest, chunk_file, pickled_chunk(marker), chunk=True)
    messages = _Messages()
    logger = logging.getLogger("rl_control")
    logger.addHandler(messages)
    try:
        resumed = small_learner(run_dir)
    finally:
        logger.removeHandler(messages)
    state_named = any(newest.with_suffix(".pt").name in line for line in messages.lines)
    chunk_named = any(Path(chunk_file).name in line for line in messages.lines)
    executed = marker.exists()
    lost = resumed.lost_rows
    held = not executed and state_named and chunk_named and resumed.env_steps == older and lost == older
    figure = (
        f"2 pickle payloads (checkpoint state, replay chunk): {int(executed)} executed, "
        f"{int(state_named) + int(chunk_named)} refused naming the file; resumed the older checkpoint "
        f"({resumed.env_steps} steps), {lost} rows of the poisoned chunk lost"
    )
    values = {
        "executed": float(executed),
        "named": float(state_named + chunk_named),
        "resumed_env_steps": float(resumed.env_steps),
        "lost_rows": float(lost),
    }
    return ScenarioResult(figure, held=held, values=values)

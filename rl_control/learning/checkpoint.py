"""Crash-safe run-directory persistence: atomic files, checksummed checkpoints, chunked replay.

Run directory layout::

    run.json                         dims, agent config, metadata (written atomically; a copy is in
                                     every manifest, so a deleted run.json is recovered from them)
    checkpoints/ckpt_<updates>_<env steps>.pt    learner state (torch.save of tensors and plain values only)
    checkpoints/ckpt_<updates>_<env steps>.json  manifest, the ONE commit point: sha256 + size of the .pt,
                                     counters, chunks, the run description and the caller's stream state
    replay/chunk_<start>_<end>_<sha>.npz   online transitions [start, end) of the stream (append-only)
    demos/demos_<k>_<sha>.npz        demonstration transitions added to the run
    demos/interventions_<start>_<end>_<sha>.npz   intervention rows kept in the demonstration buffer
                                     (demo-buffer rows [start, end); the manifest entry counts them)

A checkpoint counts only when its manifest exists and its state file matches its recorded sha256; resume
walks manifests newest first and takes the first intact one. A replay or demonstration chunk that fails
its checksum costs only its own rows (see :meth:`rl_control.learning.learner.Learner.create_or_resume`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from rl_control.transitions import TransitionBatch

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
REPLAY_DIR = "replay"
DEMO_DIR = "demos"
_MANIFEST_PATTERN = re.compile(r"^ckpt_(\d+)_(\d+)\.json$")
#: Manifest keys and the JSON types they must have.
_MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "state_file": str,
    "sha256": str,
    "size": int,
    "num_updates": int,
    "env_steps": int,
    "policy_version": int,
    "replay_total": int,
    "replay_chunks": list,
    "demo_chunks": list,
}
_CHUNK_TYPES: dict[str, type] = {"file": str, "sha256": str, "size": int}


class CheckpointError(RuntimeError):
    """A checkpoint (or a file it references) is missing, truncated or fails its checksum."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` via a temporary file, fsync and rename (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except OSError as error:  # e.g. disk full: a write error carries no file name of its own
        Path(temp_name).unlink(missing_ok=True)
        raise OSError(error.errno, f"cannot write {path}: {error.strerror}", str(path)) from error
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_verified(path: Path, expected_sha256: str, expected_size: int | None = None) -> bytes:
    """File bytes, after checking size and checksum; raises :class:`CheckpointError` otherwise."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error})") from error
    if expected_size is not None and len(data) != expected_size:
        raise CheckpointError(
            f"{path}: truncated or overwritten ({len(data)} bytes, expected {expected_size})"
        )
    if sha256(data) != expected_sha256:
        raise CheckpointError(f"{path}: checksum mismatch (corrupt file)")
    return data


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`CheckpointError` naming the file for anything else.

    Random bytes, a truncated file, invalid UTF-8 or a JSON value that is not an object are all refused
    with the same clear message instead of a bare decoding error.
    """
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as error:  # ValueError covers UnicodeDecodeError and JSONDecodeError
        raise CheckpointError(f"{path}: unreadable {what} ({error})") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: unreadable {what} (a JSON object was expected)")
    return data


def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """:class:`CheckpointError` naming ``path`` if a key is missing or of the wrong type."""
    for key, kind in _MANIFEST_TYPES.items():
        if not isinstance(manifest.get(key), kind):
            raise CheckpointError(f"{path}: manifest lacks {key!r} or it is not a {kind}")
    replay_types = {**_CHUNK_TYPES, "start": int, "end": int}
    for entries, types in (
        (manifest["replay_chunks"], replay_types),
        (manifest["demo_chunks"], _CHUNK_TYPES),
    ):
        for entry in entries:
            if not (isinstance(entry, dict) and all(isinstance(entry.get(k), t) for k, t in types.items())):
                raise CheckpointError(f"{path}: malformed chunk entry {entry!r:.200}")


class RunDirectory:
    """File operations on one run directory (see the module docstring for the layout)."""

    def __init__(self, root: Path, keep_checkpoints: int = 3) -> None:
        self.root = Path(root)
        self.keep_checkpoints = keep_checkpoints

    # -- run description -------------------------------------------------------------------------
    def read_run_info(self) -> dict[str, Any] | None:
        """``run.json``; ``None`` if absent, :class:`CheckpointError` naming the file if unreadable."""
        path = self.root / RUN_FILE
        if not path.exists():
            return None
        return read_json_object(path, "run description")

    def recover_run_info(self) -> dict[str, Any]:
        """The run description copied into the newest readable manifest (``run.json`` was deleted)."""
        for manifest_path in self.manifests():
            try:
                info = read_json_object(manifest_path, "manifest").get("run_info")
            except CheckpointError:
                continue
            if isinstance(info, dict):
                log.warning("%s is missing: recovered it from %s", self.root / RUN_FILE, manifest_path)
                return info
        raise CheckpointError(
            f"{self.root / RUN_FILE} is missing and no checkpoint manifest holds a copy of it; "
            "restore the file or choose another run directory"
        )

    def write_run_info(self, info: dict[str, Any]) -> None:
        atomic_write(self.root / RUN_FILE, json.dumps(info, indent=2, sort_keys=True).encode())

    # -- replay chunks ---------------------------------------------------------------------------
    def write_chunk(self, directory: str, stem: str, batch: TransitionBatch) -> dict[str, Any]:
        data = batch.to_npz_bytes()
        digest = sha256(data)
        path = self.root / directory / f"{stem}_{digest[:12]}.npz"  # content-named: never overwritten
        atomic_write(path, data)
        return {"file": f"{directory}/{path.name}", "sha256": digest, "size": len(data), "rows": len(batch)}

    def read_chunk(self, entry: dict[str, Any]) -> TransitionBatch:
        path = self.root / entry["file"]
        data = read_verified(path, entry["sha256"], entry["size"])
        try:
            return TransitionBatch.from_npz(data, name=str(path))
        except ValueError as error:
            raise CheckpointError(f"unreadable transition chunk: {error}") from error

    # -- checkpoints -----------------------------------------------------------------------------
    def manifests(self) -> list[Path]:
        """Checkpoint manifests, newest (most updates) first."""
        directory = self.root / CHECKPOINT_DIR
        if not directory.is_dir():
            return []
        found = [
            ((int(m.group(1)), int(m.group(2))), p)
            for p in directory.iterdir()
            if (m := _MANIFEST_PATTERN.match(p.name))
        ]
        return [path for _, path in sorted(found, reverse=True)]

    def write_checkpoint(self, tag: tuple[int, int], state: dict[str, Any], content: dict[str, Any]) -> Path:
        """Write state then manifest (the manifest is the commit point); prune old checkpoints.

        ``tag`` (updates, env steps) orders checkpoints; both counters only grow within a run.
        """
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        directory = self.root / CHECKPOINT_DIR
        state_path = directory / f"ckpt_{tag[0]:012d}_{tag[1]:012d}.pt"
        atomic_write(state_path, data)
        manifest = {**content, "state_file": state_path.name, "sha256": sha256(data), "size": len(data)}
        manifest_path = directory / f"ckpt_{tag[0]:012d}_{tag[1]:012d}.json"
        atomic_write(manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())
        self._prune()
        return state_path

    def load_checkpoint(
        self, manifest_path: Path, device: torch.device
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Verified (manifest, state) of one checkpoint; its chunks are verified when read."""
        manifest = read_json_object(manifest_path, "manifest")
        _check_manifest(manifest_path, manifest)
        state_path = manifest_path.parent / str(manifest["state_file"])
        data = read_verified(state_path, manifest["sha256"], manifest["size"])
        try:
            state = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
        except Exception as error:
            raise CheckpointError(f"{state_path}: cannot load state ({error})") from error
        return manifest, state

    def _prune(self) -> None:
        """Keep the newest ``keep_checkpoints`` checkpoints and the chunks they reference."""
        manifests = self.manifests()
        referenced: set[str] = set()
        kept = 0
        for manifest_path in manifests:
            try:
                manifest: dict[str, Any] | None = read_json_object(manifest_path, "manifest")
            except CheckpointError:
                manifest = None
            if manifest is not None and kept < self.keep_checkpoints:
                kept += 1
                referenced.update(
                    entry["file"] for entry in [*manifest["replay_chunks"], *manifest["demo_chunks"]]
                )
                continue
            manifest_path.unlink(missing_ok=True)
            manifest_path.with_suffix(".pt").unlink(missing_ok=True)
        for directory in (REPLAY_DIR, DEMO_DIR):
            folder = self.root / directory
            if folder.is_dir():
                for path in folder.glob("*.npz"):
                    if f"{directory}/{path.name}" not in referenced:
                        path.unlink(missing_ok=True)

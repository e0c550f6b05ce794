"""Crash-safe run-directory persistence: atomic files, checksummed checkpoints, chunked replay.

Run directory layout::

    run.json                         dims, agent config, metadata (written once, atomically)
    checkpoints/ckpt_<updates>_<env steps>.pt    learner state (torch.save of tensors and plain values only)
    checkpoints/ckpt_<updates>_<env steps>.json  manifest: sha256 + size of the .pt, counters, chunks
    replay/chunk_<start>_<end>.npz   online transitions [start, end) of the stream (append-only chunks)
    demos/demos_<k>.npz              demonstration transitions added to the run

A checkpoint counts only when its manifest exists and every file it names matches its recorded
sha256; resume walks manifests newest first and takes the first complete one.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_control.learning.replay import FIELDS, TransitionBatch

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
REPLAY_DIR = "replay"
DEMO_DIR = "demos"
_MANIFEST_PATTERN = re.compile(r"^ckpt_(\d+)_(\d+)\.json$")
_CHUNK_PATTERN = re.compile(r"^chunk_(\d+)_(\d+)\.npz$")


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


def encode_transitions(batch: TransitionBatch) -> bytes:
    """Transitions as uncompressed npz bytes (no pickled objects)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: getattr(batch, name) for name in FIELDS})
    return buffer.getvalue()


def decode_transitions(data: bytes, source: Path) -> TransitionBatch:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return TransitionBatch(**{name: archive[name] for name in FIELDS})
    except Exception as error:
        raise CheckpointError(f"{source}: unreadable transition chunk ({error})") from error


@dataclass
class Manifest:
    """What one checkpoint consists of (serialized as JSON next to the ``.pt``)."""

    path: Path
    content: dict[str, Any]

    @property
    def state_file(self) -> Path:
        return self.path.parent / self.content["state_file"]


class RunDirectory:
    """File operations on one run directory (see the module docstring for the layout)."""

    def __init__(self, root: Path, keep_checkpoints: int = 3) -> None:
        self.root = Path(root)
        self.keep_checkpoints = keep_checkpoints

    # -- run description -------------------------------------------------------------------------
    def read_run_info(self) -> dict[str, Any] | None:
        path = self.root / RUN_FILE
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{path}: unreadable run description ({error})") from error

    def write_run_info(self, info: dict[str, Any]) -> None:
        atomic_write(self.root / RUN_FILE, json.dumps(info, indent=2, sort_keys=True).encode())

    # -- replay chunks ---------------------------------------------------------------------------
    def write_chunk(self, directory: str, stem: str, batch: TransitionBatch) -> dict[str, Any]:
        data = encode_transitions(batch)
        path = self.root / directory / f"{stem}.npz"
        atomic_write(path, data)
        return {"file": f"{directory}/{path.name}", "sha256": sha256(data), "size": len(data)}

    def read_chunk(self, entry: dict[str, Any]) -> TransitionBatch:
        path = self.root / entry["file"]
        return decode_transitions(read_verified(path, entry["sha256"], entry["size"]), path)

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
        """Verified (manifest, state) of one checkpoint; every referenced chunk is checked too."""
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{manifest_path}: unreadable manifest ({error})") from error
        for key in ("state_file", "sha256", "size", "replay_chunks", "demo_chunks"):
            if key not in manifest:
                raise CheckpointError(f"{manifest_path}: manifest lacks {key!r}")
        state_path = manifest_path.parent / manifest["state_file"]
        data = read_verified(state_path, manifest["sha256"], manifest["size"])
        for entry in [*manifest["replay_chunks"], *manifest["demo_chunks"]]:
            read_verified(self.root / entry["file"], entry["sha256"], entry["size"])
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
                manifest = json.loads(manifest_path.read_text())
            except (OSError, json.JSONDecodeError):
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

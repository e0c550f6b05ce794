"""Write-ahead log of received transitions: what the learner received survives a SIGKILL.

A message counts as received only once its record is fsynced here. Each checkpoint rotates the log: the
segments closed by the rotation hold only messages the checkpoint stores, so they are deleted once the
checkpoint is committed. On resume, records the checkpoint does not cover (sequence number above the
one its stream state holds for that publisher) are replayed, so nothing received is lost even when the
publisher (the actor) restarted too and can no longer re-deliver its history.

Layout: ``<run_dir>/wal/segment_<n>.log``, a sequence of records::

    header  "RLTW" | payload length (uint32) | crc32 of payload (uint32)        (little endian)
    payload publisher id length (uint16) | publisher id (utf-8) | seq (int64) | rows (uint32)
            | obs, action, reward, next_obs, terminated, truncated, intervention as float32, row-major
              (each field's ``rows`` values in turn; a record written before the intervention flag existed
              ends after ``truncated``, and its rows read as non-intervention rows)

A record torn by a crash (short, or failing its CRC) ends the readable part of its segment and is
counted, never loaded.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rl_control.transitions import FIELDS, OPTIONAL_FIELDS, TransitionBatch

log = logging.getLogger(__name__)

WAL_DIR = "wal"
_MAGIC = b"RLTW"
_HEADER = struct.Struct("<4sII")
_PUBLISHER = struct.Struct("<H")
_SEQ_ROWS = struct.Struct("<qI")
_SEGMENT_PATTERN = re.compile(r"^segment_(\d+)\.log$")


@dataclass
class LoggedMessage:
    """One received transitions message as recorded in the log."""

    publisher: str
    seq: int
    batch: TransitionBatch


@dataclass
class LogContents:
    """Every intact record of a log, in order, and the number of torn or damaged records skipped."""

    messages: list[LoggedMessage] = field(default_factory=list)
    damaged_records: int = 0


class TransitionLog:
    """Append-only, fsynced, segmented log of received transitions messages (see the module docstring)."""

    def __init__(self, run_dir: Path, obs_dim: int, act_dim: int) -> None:
        self.directory = Path(run_dir) / WAL_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        existing = self.segments()
        self._number = _segment_number(existing[-1]) + 1 if existing else 0
        self._stream: BinaryIO = self._open_segment()

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        found = [path for path in self.directory.iterdir() if _SEGMENT_PATTERN.match(path.name)]
        return sorted(found, key=_segment_number)

    def append(self, publisher: str, seq: int, batch: TransitionBatch) -> None:
        """Record one message and fsync it (it counts as received only after this returns)."""
        name = publisher.encode()
        arrays = [np.ascontiguousarray(getattr(batch, key), np.float32) for key in FIELDS]
        payload = b"".join(
            [
                _PUBLISHER.pack(len(name)),
                name,
                _SEQ_ROWS.pack(seq, len(batch)),
                *(a.tobytes() for a in arrays),
            ]
        )
        self._stream.write(_HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload)
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def rotate(self) -> list[Path]:
        """Start a new segment; returns the closed ones (delete them with :meth:`discard` once covered)."""
        self._stream.close()
        closed = self.segments()
        self._number += 1
        self._stream = self._open_segment()
        return closed

    @staticmethod
    def discard(segments: list[Path]) -> None:
        """Delete segments whose messages a committed checkpoint holds."""
        for path in segments:
            path.unlink(missing_ok=True)

    def read(self) -> LogContents:
        """Every intact record of every segment, oldest first."""
        contents = LogContents()
        for path in self.segments():
            self._read_segment(path, contents)
        return contents

    def close(self) -> None:
        self._stream.close()

    def _open_segment(self) -> BinaryIO:
        path = self.directory / f"segment_{self._number:08d}.log"
        stream = path.open("ab")
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the new file's name is durable before any record counts
        finally:
            os.close(directory)
        return stream

    def _read_segment(self, path: Path, contents: LogContents) -> None:
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            header = data[offset : offset + _HEADER.size]
            if len(header) < _HEADER.size or header[:4] != _MAGIC:
                self._skip(path, offset, "torn or foreign record header", contents)
                return
            _, length, crc = _HEADER.unpack(header)
            payload = data[offset + _HEADER.size : offset + _HEADER.size + length]
            offset += _HEADER.size + length
            if len(payload) < length or zlib.crc32(payload) != crc:
                self._skip(path, offset, "torn or damaged record", contents)
                continue
            try:
                contents.messages.append(self._decode(payload))
            except (ValueError, struct.error) as error:
                self._skip(path, offset, f"unreadable record ({error})", contents)

    @staticmethod
    def _skip(path: Path, offset: int, reason: str, contents: LogContents) -> None:
        contents.damaged_records += 1
        log.warning("%s: %s at byte %d skipped", path, reason, offset)

    def _decode(self, payload: bytes) -> LoggedMessage:
        (name_length,) = _PUBLISHER.unpack_from(payload, 0)
        offset = _PUBLISHER.size
        publisher = payload[offset : offset + name_length].decode()
        offset += name_length
        seq, rows = _SEQ_ROWS.unpack_from(payload, offset)
        offset += _SEQ_ROWS.size
        widths = {"obs": self.obs_dim, "action": self.act_dim, "next_obs": self.obs_dim}
        values = np.frombuffer(payload, np.float32, offset=offset)
        row_width = sum(widths.get(key, 1) for key in FIELDS)
        stored = [key for key in FIELDS if key not in OPTIONAL_FIELDS]
        if values.size == rows * row_width:
            stored = list(FIELDS)
        elif values.size != rows * (row_width - len(OPTIONAL_FIELDS)):
            raise ValueError(
                f"record holds {values.size} values, expected {rows * row_width} for {rows} rows"
            )
        arrays: dict[str, np.ndarray] = {}
        start = 0
        for key in stored:
            width = widths.get(key, 1)
            chunk = values[start : start + rows * width].copy()
            arrays[key] = chunk.reshape(rows, width) if key in widths else chunk
            start += rows * width
        return LoggedMessage(publisher, seq, TransitionBatch(**arrays))


def _segment_number(path: Path) -> int:
    match = _SEGMENT_PATTERN.match(path.name)
    assert match is not None
    return int(match.group(1))

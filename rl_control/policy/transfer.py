"""Frames on the pipe from the policy receiver process to the actor (no ROS).

A frame is a fixed header ``kind (1 byte) | version (u64) | length (u64) | signed (1 byte)`` followed by
``length`` payload bytes: the ONNX bytes of an admitted policy (kind ``P``) or the UTF-8 reason a message
was refused (kind ``R``). Reading a frame allocates its payload once and fills it with the GIL released
(the actor's control thread keeps running while megabytes arrive).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

ADMITTED = b"P"
REFUSED = b"R"
_HEADER = struct.Struct("!cQQ?")


@dataclass(frozen=True)
class Frame:
    """One message from the receiver: an admitted policy or a refusal."""

    kind: bytes
    version: int
    payload: bytes
    signed: bool = False

    @property
    def reason(self) -> str:
        """The refusal reason (kind ``R``)."""
        return self.payload.decode("utf-8", errors="replace")


def write_frame(stream: BinaryIO, frame: Frame) -> None:
    """Write and flush one frame."""
    if frame.kind not in (ADMITTED, REFUSED):
        raise ValueError(f"unknown frame kind {frame.kind!r}")
    stream.write(_HEADER.pack(frame.kind, frame.version, len(frame.payload), frame.signed))
    stream.write(frame.payload)
    stream.flush()


def read_frame(stream: BinaryIO, max_payload: int) -> Frame | None:
    """Read one frame; None at the end of the stream. ``ValueError`` on a malformed or oversized frame."""
    header = stream.read(_HEADER.size)
    if not header:
        return None
    if len(header) != _HEADER.size:
        raise ValueError(f"policy receiver pipe: truncated frame header ({len(header)} bytes)")
    kind, version, length, signed = _HEADER.unpack(header)
    if kind not in (ADMITTED, REFUSED) or length > max_payload:
        raise ValueError(f"policy receiver pipe: bad frame (kind {kind!r}, {length} bytes)")
    payload = stream.read(length)
    if len(payload) != length:
        raise ValueError(f"policy receiver pipe: frame ends after {len(payload)} of {length} bytes")
    return Frame(kind, version, payload, signed)

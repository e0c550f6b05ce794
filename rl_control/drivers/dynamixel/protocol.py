"""Dynamixel Protocol 2.0 framing for the emulator's side of the bus: CRC-16, byte stuffing, packet parsing.

The driver never uses this module (it talks through ROBOTIS's ``dynamixel_sdk``); the emulator does, so the
two sides of every test are independent implementations of the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER = bytes((0xFF, 0xFF, 0xFD, 0x00))
STUFFED = bytes((0xFF, 0xFF, 0xFD, 0xFD))
UNSTUFFED = bytes((0xFF, 0xFF, 0xFD))
BROADCAST_ID = 0xFE
MAX_PACKET_LENGTH = 1024

INST_PING = 0x01
INST_READ = 0x02
INST_WRITE = 0x03
INST_REBOOT = 0x08
INST_STATUS = 0x55
INST_SYNC_READ = 0x82
INST_SYNC_WRITE = 0x83
INST_BULK_READ = 0x92

ERROR_RESULT_FAIL = 1
ERROR_INSTRUCTION = 2
ERROR_CRC = 3
ERROR_DATA_RANGE = 4
ERROR_DATA_LENGTH = 5
ERROR_DATA_LIMIT = 6
ERROR_ACCESS = 7


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray) -> int:
    """CRC-16 of Protocol 2.0 (polynomial 0x8005, initial value 0, no reflection)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]) & 0xFFFF
    return crc


def stuff(payload: bytes) -> bytes:
    """Insert the stuffing byte after every ``FF FF FD`` of an instruction/status payload."""
    return payload.replace(UNSTUFFED, STUFFED)


def unstuff(payload: bytes) -> bytes:
    """Remove the stuffing bytes (``FF FF FD FD`` -> ``FF FF FD``)."""
    return payload.replace(STUFFED, UNSTUFFED)


@dataclass(frozen=True)
class Instruction:
    """One received instruction packet (parameters already unstuffed)."""

    servo_id: int
    instruction: int
    params: bytes


def status_packet(servo_id: int, error: int, params: bytes = b"") -> bytes:
    """A complete, stuffed status packet with its CRC."""
    payload = stuff(bytes((INST_STATUS, error)) + params)
    length = len(payload) + 2
    body = HEADER + bytes((servo_id, length & 0xFF, length >> 8)) + payload
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


class PacketParser:
    """Reassembles instruction packets from a byte stream; counts corrupt ones (bad CRC, bad length)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.crc_errors = 0
        self.framing_errors = 0

    def feed(self, data: bytes) -> list[Instruction]:
        """Add received bytes; return every complete, valid instruction in order."""
        self._buffer.extend(data)
        packets: list[Instruction] = []
        while True:
            start = self._buffer.find(HEADER)
            if start < 0:
                del self._buffer[: max(0, len(self._buffer) - 3)]  # keep a possible partial header
                return packets
            del self._buffer[:start]
            if len(self._buffer) < 7:
                return packets
            length = self._buffer[5] | (self._buffer[6] << 8)
            if length < 3 or length > MAX_PACKET_LENGTH:
                self.framing_errors += 1
                del self._buffer[:1]
                continue
            total = 7 + length
            if len(self._buffer) < total:
                return packets
            packet = bytes(self._buffer[:total])
            del self._buffer[:total]
            if crc16(packet[:-2]) != (packet[-2] | (packet[-1] << 8)):
                self.crc_errors += 1
                continue
            payload = unstuff(packet[7:-2])
            packets.append(Instruction(packet[4], payload[0], payload[1:]))

"""One exception tree for ParkWatch.

Every error carries the context an operator needs to act: the file, the line (for YAML and
other text inputs), the packet number (1-based, as Wireshark counts frames) and the field at
fault, plus a hint that says what to do next. The CLI prints ``str(err)`` as one line.
"""

from __future__ import annotations


class ParkWatchError(Exception):
    """Base of every error ParkWatch raises on purpose."""

    hint: str = ""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        packet: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.packet = packet
        self.field = field
        if hint is not None:
            self.hint = hint

    def where(self) -> str:
        """``file:line`` / ``file: packet N`` prefix, empty when no context is known."""
        parts: list[str] = []
        if self.file:
            parts.append(self.file + (f":{self.line}" if self.line else ""))
        elif self.line:
            parts.append(f"line {self.line}")
        if self.packet is not None:
            parts.append(f"packet {self.packet}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(ParkWatchError):
    """Settings that do not validate (YAML file, environment or CLI flag)."""

    hint = "fix the setting named and run again"


class TopologyError(ConfigError):
    """A park topology file that cannot be loaded or does not validate."""

    hint = "fix the topology file at the line named (see README: Park topology)"


class CaptureError(ParkWatchError):
    """A capture that cannot be read at all (missing, not a pcap/pcapng, unreadable)."""

    hint = "check the path and that the file is pcap, pcapng or their .gz"


class CaptureFormatError(CaptureError):
    """A capture whose file structure (not a packet inside it) is broken."""


class TransportError(ParkWatchError):
    """A transport (in-memory queue, Kafka) that cannot deliver or receive."""

    hint = "check that the broker is reachable, or run without --to for the embedded pipeline"


class StoreError(ParkWatchError):
    """The event store (SQLite, Elasticsearch) refused or lost a write."""

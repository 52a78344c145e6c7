"""Registries: one line registers one unit of extension.

A unit is a link-type decoder, a protocol binding, an output format, a detector, a sink …
Each kind has a :class:`Registry`; contract tests iterate over every registered unit, so a new
unit is tested by the same rules as the old ones without touching a central file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from parkwatch.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of units of one kind (keys are str or int, e.g. a DLT number)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._units: dict[str | int, T] = {}

    def register(self, key: str | int, unit: T) -> T:
        if key in self._units and self._units[key] is not unit:
            raise ConfigError(f"{self.kind} {key!r} is registered twice")
        self._units[key] = unit
        return unit

    def add(self, key: str | int) -> Callable[[T], T]:
        """Decorator form of :meth:`register`."""

        def deco(unit: T) -> T:
            return self.register(key, unit)

        return deco

    def get(self, key: str | int) -> T:
        try:
            return self._units[key]
        except KeyError:
            known = ", ".join(str(k) for k in self._units)
            raise ConfigError(f"unknown {self.kind} {key!r} (known: {known})") from None

    def find(self, key: str | int) -> T | None:
        return self._units.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._units

    def __iter__(self) -> Iterator[str | int]:
        return iter(self._units)

    def items(self) -> list[tuple[str | int, T]]:
        return list(self._units.items())

    def __len__(self) -> int:
        return len(self._units)


# Application protocols bound to transport ports, like scapy's ``bind_layers``: a decoder module
# calls ``bind_port("modbus", "tcp", 502)``. The flow table labels flows by the responder port
# until a content decoder confirms or corrects it.
PORT_BINDINGS: Registry[str] = Registry("port binding")


def bind_port(app_proto: str, transport: str, port: int) -> None:
    """Bind ``app_proto`` to ``transport`` (``tcp``/``udp``) ``port``."""
    key = f"{transport}/{port}"
    if PORT_BINDINGS.find(key) != app_proto:  # binding the same name twice is harmless
        PORT_BINDINGS.register(key, app_proto)


def app_proto_for(ip_proto: int, port: int) -> str | None:
    transport = {6: "tcp", 17: "udp"}.get(ip_proto)
    if transport is None:
        return None
    return PORT_BINDINGS.find(f"{transport}/{port}")

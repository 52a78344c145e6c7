"""Application-protocol decoders (one module per protocol) and the engine that drives them.

Importing this package imports every decoder module in it, so each registers itself
(:func:`collectors.apps.base.register`) — adding a protocol touches no central file.
"""

from __future__ import annotations

import importlib
import pkgutil

from collectors.apps.base import APP_DECODERS, AppDecoder, DecodeError, Msg, register

_SKIP = {"base", "engine", "engine_capture", "engine_decode", "engine_state", "streams", "cli"}


def load_all() -> None:
    """Import every decoder module of this package (idempotent)."""
    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in _SKIP and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


load_all()


def decoder_names() -> list[str]:
    """Names of the registered decoders (the ``decoders`` stage entry point)."""
    return sorted(str(k) for k in APP_DECODERS)


__all__ = [
    "APP_DECODERS",
    "AppDecoder",
    "DecodeError",
    "Msg",
    "decoder_names",
    "load_all",
    "register",
]

"""Settings: defaults < YAML file < environment < CLI flags, validated once.

The YAML file (``--config FILE`` or ``PARKWATCH_CONFIG``) holds the same keys as
:class:`Settings`; environment variables are ``PARKWATCH_<KEY>`` with ``__`` between nested
keys (``PARKWATCH_FLOWS__TCP_IDLE=120``); CLI flags override both. Unknown keys in the file are
errors, so a typo cannot silently leave a default in force.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from parkwatch.errors import ConfigError
from parkwatch.transport.base import TransportSettings

if TYPE_CHECKING:
    import numpy as np


class FlowSettings(BaseModel):
    """Flow-table timeouts (seconds, capture time) and memory bound."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    tcp_idle: float = Field(300.0, gt=0, description="TCP flow idle timeout (Zeek: 5 min).")
    udp_idle: float = Field(60.0, gt=0, description="UDP flow idle timeout.")
    icmp_idle: float = Field(60.0, gt=0, description="ICMP/ICMPv6 flow idle timeout.")
    other_idle: float = Field(60.0, gt=0, description="Idle timeout of other IP protocols.")
    tcp_close_linger: float = Field(
        5.0, ge=0, description="After FIN from both sides or a RST: quiet time before closing."
    )
    active_timeout: float = Field(
        1800.0, gt=0, description="A flow longer than this is cut and continued in a new record."
    )
    tcp_active: float | None = Field(
        None, gt=0, description="TCP active timeout (default: active_timeout)."
    )
    udp_active: float | None = Field(
        None, gt=0, description="UDP active timeout (default: active_timeout)."
    )
    icmp_active: float | None = Field(
        None, gt=0, description="ICMP active timeout (default: active_timeout)."
    )
    other_active: float | None = Field(None, gt=0, description="Other protocols' active timeout.")

    def per_protocol(self, kind: str) -> np.ndarray:
        """Timeouts in ns indexed by IP protocol number: ``kind`` is ``idle`` or ``active``."""
        import numpy as np

        default = self.other_idle if kind == "idle" else self.other_active or self.active_timeout
        out = np.full(256, default, dtype=np.float64)
        for name, protos in (("tcp", (6,)), ("udp", (17,)), ("icmp", (1, 58))):
            value = getattr(self, f"{name}_{kind}")
            if kind == "active" and value is None:
                value = self.active_timeout
            out[list(protos)] = value
        return (out * 1e9).astype(np.int64)

    max_flows: int = Field(
        1_000_000, ge=16, description="Flow-table bound; the least recently seen are evicted."
    )
    batch_bytes: int = Field(16 << 20, ge=1 << 16, description="Capture bytes decoded per batch.")


class Settings(BaseModel):
    """All ParkWatch settings (layers are merged by :func:`load_settings`)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    vantage: str = Field("default", min_length=1, description="Vantage point / collector id.")
    topology: Path | None = Field(None, description="Park topology YAML (None: default).")
    flows: FlowSettings = Field(default_factory=lambda: FlowSettings.model_construct())
    transport: TransportSettings = Field(
        default_factory=lambda: TransportSettings.model_construct(),
        description="Topics, producer, consumer and spool settings (parkwatch/transport).",
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # only when there is a file: the import is a measurable part of start-up

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", file=str(path)) from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            file=str(path),
            line=mark.line + 1 if mark else None,
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError("config file must be a mapping of settings", file=str(path))
    return data


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_layer() -> dict[str, Any]:
    """Environment variables as a nested dict (``PARKWATCH_A__B`` -> ``{"a": {"b": …}}``)."""
    out: dict[str, Any] = {}
    for name, value in os.environ.items():
        if not name.startswith("PARKWATCH_") or name == "PARKWATCH_CONFIG":
            continue
        parts = name[len("PARKWATCH_") :].lower().split("__")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def load_settings(config_file: str | os.PathLike[str] | None = None, **cli: Any) -> Settings:
    """Build settings from the four layers; ``cli`` holds flags given (None = not given).

    Nested CLI values use dicts: ``load_settings(flows={"tcp_idle": 10})``.
    """
    path = config_file or os.environ.get("PARKWATCH_CONFIG")
    layers: dict[str, Any] = _read_yaml(Path(path)) if path else {}
    layers = _merge(layers, _env_layer())
    layers = _merge(layers, {k: v for k, v in cli.items() if v is not None})
    if not layers:  # all defaults: nothing to validate, and no validator to build
        return Settings.model_construct()
    try:
        return Settings.model_validate(layers)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"{err['msg']} (got {err.get('input')!r})",
            field=field,
            file=str(path) if path else None,
        ) from exc

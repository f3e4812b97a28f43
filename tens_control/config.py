"""User settings: the saved device choice and the patient's pseudonym.

One small TOML file in the user configuration directory (platformdirs; for example
``~/.config/tens-control/config.toml`` on Linux), overridable with ``$TENS_CONTROL_CONFIG``::

    # tens-control settings
    device = "/dev/ttyUSB0"
    protocol = "tsp"        # optional: tsp, sciencemode2 or sciencemode4
    profile = "generic-2ch" # optional: a device profile id
    patient = "patient-1"

Every key is optional. A missing file means "nothing saved yet" (the built-in simulator and the
default patient are used). A malformed file gives one :class:`ConfigError` naming the file and
the field; it is never overwritten by a read.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated

import platformdirs
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from tens_control.errors import TensControlError

ENV_CONFIG = "TENS_CONTROL_CONFIG"
"""Environment variable naming the settings file (tests and multi-user setups)."""
CONFIG_FILENAME = "config.toml"

_ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
_IDENTIFIER = r"^[a-z0-9][a-z0-9-]*$"
_PSEUDONYM = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ConfigError(TensControlError):
    """The settings file cannot be read or written. The message names the file and field."""


class UserConfig(BaseModel):
    """The saved settings (every field optional)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=_ONE_LINE)] | (
        None
    ) = None
    """The device URL or port (``/dev/ttyUSB0``, ``COM3``, ``socket://...``, ``sim://tsp``)."""
    protocol: (
        Annotated[str, StringConstraints(pattern=r"^(tsp|sciencemode2|sciencemode4)$")] | None
    ) = None
    """The protocol to speak on ``device`` when its URL does not say (default: TSP)."""
    profile: Annotated[str, StringConstraints(max_length=64, pattern=_IDENTIFIER)] | None = None
    """The device profile id to use with ``device`` (default: chosen from the device's identity)."""
    patient: Annotated[str, StringConstraints(pattern=_PSEUDONYM)] | None = None
    """The patient's pseudonym (never a name)."""


def config_path() -> Path:
    """``$TENS_CONTROL_CONFIG`` if set, else ``config.toml`` in the user config directory."""
    explicit = os.environ.get(ENV_CONFIG, "")
    if explicit:
        return Path(explicit).expanduser()
    return Path(platformdirs.user_config_dir("tens-control", appauthor=False)) / CONFIG_FILENAME


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        known = ", ".join(UserConfig.model_fields)
        return f"field {where}: unknown setting (known settings: {known})"
    return f"field {where}: {first['msg']}"


def load_config(path: Path | None = None) -> UserConfig:
    """The saved settings; empty settings if there is no file yet."""
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return UserConfig()
    except OSError as error:
        raise ConfigError(f"settings file {path}: cannot read it ({error.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"settings file {path}: not UTF-8 text; fix or delete it") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            f"settings file {path}: not valid TOML ({error}); fix or delete it"
        ) from None
    try:
        return UserConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"settings file {path}: {_describe(error)}; fix or delete it") from None


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def dump_config(config: UserConfig) -> str:
    """The settings as TOML (only the fields that are set)."""
    lines = ["# tens-control settings (tens-control writes this file; edit with care)"]
    for name, value in config.model_dump(exclude_none=True).items():
        lines.append(f"{name} = {_toml_string(str(value))}")
    return "\n".join(lines) + "\n"


def save_config(config: UserConfig, path: Path | None = None) -> Path:
    """Write the settings atomically (owner-only file); returns the path written."""
    path = path or config_path()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fp:
            fp.write(dump_config(config))
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise ConfigError(f"settings file {path}: cannot write it ({error.strerror})") from None
    return path


def update_config(path: Path | None = None, **changes: str | None) -> UserConfig:
    """Load, change the given fields (None clears one), validate and save."""
    current = load_config(path)
    data = current.model_dump()
    unknown = [name for name in changes if name not in data]
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    data.update(changes)
    try:
        updated = UserConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"settings: {_describe(error)}") from None
    save_config(updated, path)
    return updated


def is_valid_pseudonym(text: str) -> bool:
    return re.match(_PSEUDONYM, text) is not None


def saved_device(path: Path | None = None) -> UserConfig:
    """The saved settings that choose a device: ``device`` (None when nothing is saved: the
    built-in simulator is used), ``protocol`` and ``profile``."""
    return load_config(path)

"""Pipeline configs are plain TOML files: one section per stage.

`configs/<name>.toml` holds the named presets (tiny, default, paper); a user config
is any TOML file with the same sections. Unknown keys are errors, so a typo never
silently falls back to a default.
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from model.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(UserError):
    """A config that names an unknown preset, an unknown key or an impossible value."""


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def load_config(name_or_path: str | Path) -> dict:
    """Load a preset by name (`default`) or a TOML file by path, merged over `default`."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise ConfigError(f"unknown preset '{name_or_path}' (known: {', '.join(preset_names())})")
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        with open(path, "rb") as f:
            user = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    with open(CONFIG_DIR / "default.toml", "rb") as f:
        base = tomllib.load(f)
    merged = merge(base, user, where=str(path))
    merged["name"] = user.get("name", path.stem)
    return merged


def merge(base: dict, override: dict, where: str = "config") -> dict:
    """Recursively merge `override` into a copy of `base`; keys absent from base are errors."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key == "name":
            out[key] = value
            continue
        if key not in base:
            raise ConfigError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(base))})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a table")
            out[key] = merge(base[key], value, where=f"{where}:{key}")
        else:
            out[key] = value
    return out

"""Pipeline configs are plain TOML files: one section per stage.

`configs/<name>.toml` holds the named presets (tiny, default, paper); a user config
is any TOML file with the same sections. Unknown keys are errors, so a typo never
silently falls back to a default.
"""
from __future__ import annotations

import copy
import json
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


def _same(saved, current, base) -> bool:
    """Equal, where a key the saved config lacks counts as the default it had when it was added.

    Convention: a new config key's default in configs/default.toml reproduces what the code did
    before the key existed, so results made before it was added stay valid.
    """
    if isinstance(current, dict) and isinstance(saved, dict):
        base = base if isinstance(base, dict) else {}
        return all(_same(saved[k], v, base.get(k)) if k in saved else v == base.get(k, object())
                   for k, v in current.items()) and set(saved) <= set(current)
    return saved == current


def stale(saved_config: Path, cfg: dict, sections) -> bool:
    """True when a result was made from other settings than `cfg` in these sections."""
    if not Path(saved_config).exists():
        return True
    saved = json.loads(Path(saved_config).read_text())
    with open(CONFIG_DIR / "default.toml", "rb") as f:
        base = tomllib.load(f)
    return not all(k in saved and _same(saved[k], cfg[k], base.get(k)) for k in sections)

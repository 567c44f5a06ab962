"""Pipeline configs are plain TOML files: one section per stage, checked against one schema.

`configs/<name>.toml` holds the named presets (tiny, default, paper, ...); a user config is any
TOML file with the same sections, merged over `configs/default.toml`. Unknown keys are errors,
so a typo never silently falls back to a default.

default.toml holds every key's DEFAULT; the schema (ccstae/core/schema.py) holds its TYPE, RANGE and
a one-line DOC, one section dataclass per [section], one line per key. load_config checks every value
before anything runs (`ccstae config check CONFIG`; `ccstae config show CONFIG` prints the
merged config with each key's doc and range). To add a key: a line in default.toml (its
default reproducing the old behaviour) and a line in the schema; tests/test_config.py fails while
one of the two is missing.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import math
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import get_type_hints

from ccstae.core.errors import UserError
from ccstae.core.schema import SCHEMA


def _config_dir() -> Path:
    """configs/ of a source checkout, else the installed data package (pyproject: ccstae_configs)."""
    here = Path(__file__).resolve().parents[2] / "configs"
    if here.is_dir():
        return here
    spec = importlib.util.find_spec("ccstae_configs")
    return Path(list(spec.submodule_search_locations)[0]) if spec else here


CONFIG_DIR = _config_dir()


class ConfigError(UserError):
    """A config that names an unknown preset, an unknown key or an impossible value."""


# ----------------------------------------------------------------------------- checking

def _interval(text: str):
    lo, hi = (s.strip() for s in text[1:-1].split(","))
    return float(lo), float(hi), text[0] == "[", text[-1] == "]"


def _value_problem(value, kind, meta) -> str | None:
    """Why one scalar value does not fit its type and range (None: it fits)."""
    if kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        return "must be an integer"
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)):
        return "must be a number"
    if kind is str and not isinstance(value, str):
        return "must be a string"
    if "choices" in meta and value not in meta["choices"] and \
            str(value).lower() not in (c.lower() for c in meta["choices"]):
        return f"{value!r} is not one of {', '.join(meta['choices'])}"
    if "range" in meta:
        lo, hi, lo_in, hi_in = _interval(meta["range"])
        if value < lo or value > hi or (value == lo and not lo_in) or (value == hi and not hi_in):
            return f"{value!r} is outside {meta['range']}"
    return None


def _key_problem(value, hint, meta) -> str | None:
    if getattr(hint, "__origin__", None) is list:
        if not isinstance(value, list):
            return "must be a list"
        n = meta["n"]
        if n == 0 and not value:
            return "must not be empty"
        if n and len(value) != n:
            return f"must have {n} elements"
        kind = hint.__args__[0]
        return next((p for p in (_value_problem(v, kind, meta) for v in value) if p), None)
    return _value_problem(value, hint, meta)


def validate(cfg: dict, where: str = "config") -> dict:
    """Check every known key of every known section; ConfigError naming the first bad key.

    A section or key the schema does not know yet is left alone here (tests/test_config.py
    fails on it, not a user)."""
    for name, cls in SCHEMA.items():
        values = cfg.get(name)
        if not isinstance(values, dict):
            continue
        hints = get_type_hints(cls)
        for f in fields(cls):
            if f.name in values:
                problem = _key_problem(values[f.name], hints[f.name], f.metadata)
                if problem:
                    raise ConfigError(f"{where}: {name}.{f.name} = {values[f.name]!r}: {problem} "
                                      f"({f.metadata['doc']})")
        check = getattr(cls, "check", None)
        problem = check(values) if check and all(f.name in values for f in fields(cls)) else None
        if problem:
            raise ConfigError(f"{where}: [{name}] {problem}")
    return cfg


def describe(cfg: dict) -> str:
    """The config as TOML, each known key with its doc and range (`ccstae config show`)."""
    lines = [f"name = {json.dumps(cfg.get('name', ''))}"]
    for name, values in cfg.items():
        if not isinstance(values, dict):
            continue
        docs = {f.name: f.metadata for f in fields(SCHEMA[name])} if name in SCHEMA else {}
        lines += ["", f"[{name}]"]
        for k, v in values.items():
            meta = docs.get(k, {})
            limit = meta.get("range") or ("|".join(meta["choices"]) if "choices" in meta else "")
            note = f"  # {meta.get('doc', '(not in the schema)')}" + (f"; {limit}" if limit else "")
            lines.append(f"{k} = {json.dumps(v)}{note}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- loading

def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def config_path(name_or_path: str | Path) -> Path:
    """The TOML file of a preset name (`default`) or of a path; a clear error when there is none."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise ConfigError(f"unknown preset '{name_or_path}' (known: {', '.join(preset_names())})")
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    return path


def stated(name_or_path: str | Path, section: str, key: str) -> bool:
    """Whether a config sets [section] key itself, or through a preset it extends, rather than
    inheriting default.toml's value: a default may then be chosen for the user's data instead
    (`ccstae train --input`: [train] noise_mode = "auto")."""
    path = config_path(name_or_path)
    if path.resolve() == (CONFIG_DIR / "default.toml").resolve():
        return False
    user = _read_toml(path)
    if key in user.get(section, {}):
        return True
    return isinstance(user.get("extends"), str) and stated(user["extends"], section, key)


def load_config(name_or_path: str | Path, _seen: tuple = ()) -> dict:
    """Load a preset by name (`default`) or a TOML file by path, merged over `default`, checked.

    A config may start from another preset: `extends = "ms-mos2-single"` (top level) merges it
    over that preset instead of `default`, so a study preset states only what it changes."""
    path = config_path(name_or_path)
    user = _read_toml(path)
    base_name = user.pop("extends", None)
    if base_name is None:
        base = _read_toml(CONFIG_DIR / "default.toml")
    else:
        if not isinstance(base_name, str) or Path(base_name).suffix or base_name in _seen + (path.stem,):
            raise ConfigError(f"{path}: extends = {base_name!r} must name another preset (no cycles)")
        base = load_config(base_name, _seen + (path.stem,))
        base.pop("name", None)
    merged = merge(base, user, where=str(path))
    merged["name"] = user.get("name", path.stem)
    return validate(merged, where=str(path))


def merge(base: dict, override: dict, where: str = "config") -> dict:
    """Recursively merge `override` into a copy of `base`; keys absent from base are errors."""
    out = copy.deepcopy(base)
    for key_, value in override.items():
        if key_ == "name":
            out[key_] = value
            continue
        if key_ not in base:
            raise ConfigError(f"{where}: unknown key '{key_}' (known: {', '.join(sorted(base))})")
        if isinstance(base[key_], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key_}' must be a table")
            out[key_] = merge(base[key_], value, where=f"{where}:{key_}")
        else:
            out[key_] = value
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
    base = _read_toml(CONFIG_DIR / "default.toml")
    return not all(k in saved and _same(saved[k], cfg[k], base.get(k)) for k in sections)

"""Pipeline configs are plain TOML files: one section per stage, checked against one schema.

`configs/<name>.toml` holds the named presets (tiny, default, paper, ...); a user config is any
TOML file with the same sections, merged over `configs/default.toml`. Unknown keys are errors,
so a typo never silently falls back to a default.

default.toml holds every key's DEFAULT; the schema below holds its TYPE, RANGE and a one-line
DOC, one section dataclass per [section], one line per key. load_config checks every value
before anything runs (`ccstae config check CONFIG`; `ccstae config show CONFIG` prints the
merged config with each key's doc and range). To add a key: a line in default.toml (its
default reproducing the old behaviour) and a line here; tests/test_config.py fails while one
of the two is missing.

Ranges are intervals, "[0, 1)", "[1, inf)", "(0, inf)"; lists check each element, `n=` their
length (0: any, but not empty; None: may be empty); str keys take `choices`.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import get_type_hints

from ccstae.core.errors import UserError


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


# ----------------------------------------------------------------------------- the schema

def key(range_or_choices=None, doc: str = "", n: int | None = None):
    """One key of a section: an interval string ("[0, 1)") or a tuple of choices, and its doc."""
    meta = {"doc": doc, "n": n}
    if isinstance(range_or_choices, tuple):
        meta["choices"] = range_or_choices
    elif range_or_choices is not None:
        meta["range"] = range_or_choices
    return field(default=None, metadata=meta)


SCHEMA: dict[str, type] = {}


def section(name: str):
    def register(cls):
        SCHEMA[name] = dataclass(cls)
        return SCHEMA[name]
    return register


@section("simulate")
class Simulate:
    scan: list[int] = key("[1, inf)", "probe positions (Rx, Ry) of a simulated test scan", n=2)
    pattern: int = key("[8, 4096]", "detector pixels per side (Qx = Qy)")
    n_grains: int = key("[1, inf)", "Voronoi grains in the field of view")
    grain_rotation_deg: float = key("[0, 180]", "grain in-plane rotations drawn uniformly in [-this, +this]")
    rotation_field_deg: float = key("[0, 90]", "amplitude of the smooth rotation field inside grains")
    strain_amplitude: float = key("[0, 0.5]", "max |exx|, |eyy|, |exy| of the smooth strain field")
    strain_correlation: float = key("(0, inf)", "correlation length of the strain field")
    lattice_constant: float = key("(0, inf)", "lattice constant a (Angstrom)")
    beam_energy_kv: float = key("(0, inf)", "beam energy (kV)")
    camera_length_mm: float = key("(0, inf)", "camera length (mm): with detector_pixel_um the reciprocal pixel")
    detector_pixel_um: float = key("(0, inf)", "detector pixel pitch (um)")
    convergence_mrad: float = key("(0, inf)", "probe semi-angle (mrad): sets the Bragg-disk radius")
    disk_edge_px: float = key("[0, inf)", "soft edge width of the disks (pixels)")
    intensity_decay: float = key("[0, inf)", "B (Angstrom^2): disk intensity ~ exp(-B |g|^2 / 4)")
    central_disk: float = key("[0, inf)", "central-disk intensity relative to the first-order disks")
    jitter_px: float = key("[0, inf)", "std of random pattern-centre shifts (descan), pixels")
    seed: int = key("[0, inf)", "sample and noise seed of `ccstae simulate`")
    engine: str = key(("kinematic", "multislice"), "physics engine: disks from the lattice, or abTEM from atoms")
    crystal: str = key(("none", "MoS2", "WS2", "MoSe2", "WSe2", "SrTiO3", "Si110"), "specimen (none: `lattice`)")
    lattice: str = key(("hexagonal", "square", "rectangular"), "lattice of crystal none")
    lattice_constant_b: float = key("[0, inf)", "second constant b of a rectangular lattice (0: = a)")
    strain_field: str = key(("independent", "displacement"), "independent smooth maps, or one displacement u(r)")
    scan_step_A: float = key("(0, inf)", "probe step (Angstrom)")
    thickness_A: float = key("[0, inf)", "specimen thickness along the beam (Angstrom; 0: one cell)")
    sampling_A: float = key("(0, inf)", "multislice real-space sampling (Angstrom)")
    slice_thickness_A: float = key("(0, inf)", "multislice slice thickness (Angstrom)")
    central_share: float = key("[0, 1)", "kinematic: central disk's share of all the electrons (0: use central_disk)")


@section("distortion")
class Distortion:
    descan_px: float = key("[0, inf)", "descan: largest peak-to-peak of the pattern origin across the scan (px)")
    descan_smooth: float = key("[0, 1]", "share of the smooth term of the descan beside its linear ramp")
    ellipticity: float = key("[0, 0.5)", "elliptical distortion a/b - 1")
    ellipse_axis_deg: float = key("[-180, 180]", "long axis of the ellipse, degrees from Qx towards Qy")
    rotation_deg: float = key("[-360, 360]", "scan-detector rotation, degrees from Qx towards Qy")
    flip: bool = key(None, "detector transposed (Qx <-> Qy) relative to the scan, before the rotation")
    bad_pixel_fraction: float = key("[0, 0.5)", "fraction of bad pixels, half dead and half hot")
    gain_std: float = key("[0, 1)", "per-pixel gain spread (std around 1)")
    deflection_px: float = key("[0, inf)", "the specimen's DPC beam deflection, max pixels (what sets rotation)")


@section("noise")
class Noise:
    counts: float = key("(0, inf)", "electrons per pattern (the dose)")
    lorentz_gamma: float = key("(0, inf)", "Lorentzian background half width, fraction of the pattern")
    test_levels: list[float] = key("[0, 1)", "background levels w of the test scans", n=0)
    test_seed: int = key("[0, inf)", "seed of the test scans (another sample than training)")


@section("model")
class Model:
    filters: list[int] = key("[1, 1024]", "channels of each 3x3 convolution", n=0)
    dense: list[int] = key("[1, 4096]", "units of each dense layer")
    input_binning: int = key("[1, 64]", "sum-bin the pattern by this factor before the encoder")
    input_crop: int = key("[0, inf)", "pixels dropped at each edge after binning")
    central_mask: str = key(("auto", "none"), "mask the measured central disk (auto) or keep every pixel")
    lattice_symmetry: str = key(("auto", "hexagonal", "square", "rectangular"), "sets the rotation bound")


@section("train")
class Train:
    sample_kind: str = key(("random", "scan"), "simulated training sample: random patterns or one scan")
    sample_scan: list[int] = key("[1, inf)", "patterns of the training sample (rows, cols)", n=2)
    sample_grains: int = key("[1, inf)", "grains of a sample_kind scan")
    sample_seed: int = key("[0, inf)", "seed of the training sample")
    epochs: int = key("[1, inf)", "training epochs")
    batch_size: int = key("[1, inf)", "patterns per batch")
    learning_rate: float = key("(0, 1]", "Adam learning rate")
    max_patterns: int = key("[1, inf)", "patterns drawn from a large training cube")
    val_fraction: float = key("(0, 0.5)", "probe positions held out for the validation loss")
    patience: int = key("[1, inf)", "early stopping: epochs without a better validation loss")
    noise_mode: str = key(("none", "fixed", "mixed", "curriculum", "auto"),
                          "noise injection while training (auto: chosen from the cube's background and dose)")
    noise_levels: list[float] = key("[0, 1)", "background levels w drawn while training", n=0)
    noise_per: str = key(("sample", "batch"), "a level per pattern or per batch")
    blur_start: float = key("[0, inf)", "loss blur (pixels) at the start")
    blur_end: float = key("[0, inf)", "loss blur (pixels) after 60 % of training")
    mask_inner: float = key("[0, 0.5)", "inner radius of the annular loss mask, fraction of the pattern")
    mask_outer: float = key("(0, 0.5]", "outer radius of the annular loss mask")
    reference_freeze: float = key("[0, 1]", "fraction of the epochs the reference stays at its initial value")
    distill_epochs: int = key("[0, inf)", "self-distillation epochs after the cycle epochs (0: none)")
    distill_learning_rate: float = key("(0, 1]", "Adam learning rate of self-distillation (cosine decay)")
    distill_steps: int = key("[1, 50]", "Gauss-Newton steps that refine each training pattern's target")
    seed: int = key("[0, inf)", "training seed")

    @staticmethod
    def check(t: dict) -> str | None:
        if not t["mask_inner"] < t["mask_outer"]:
            return f"mask_inner {t['mask_inner']} must be below mask_outer {t['mask_outer']}"
        return None


BITS = "[2, 32]"  # every fixed-point width; integer bits lie in [0, bits): the one place they are checked


@section("quant")
class Quant:
    weight_bits: int = key(BITS, "bits of every weight")
    bias_bits: int = key(BITS, "bits of every bias")
    activation_bits: int = key(BITS, "bits of every ReLU output")
    input_bits: int = key(BITS, "bits of the encoder input x = sqrt(I / s)")
    input_integer: int = key("[0, 32)", "integer bits of the input (its range [0, 2^this))")
    activation_integer: int = key("[0, 32)", "integer bits of the ReLU outputs")
    count_bits: int = key("[1, 32]", "the detector's counter width: the front end clips counts to it")
    sparsity: float = key("[0, 1)", "target fraction of zero weights (pruning)")
    epochs: int = key("[1, inf)", "QAT fine-tuning epochs")
    learning_rate: float = key("(0, 1]", "QAT learning rate")
    blur: float = key("[0, inf)", "loss blur during fine-tuning (pixels)")

    @staticmethod
    def check(q: dict) -> str | None:
        for name in ("input", "activation"):
            problem = fixed_point_problem(name, q[f"{name}_bits"], q[f"{name}_integer"])
            if problem:
                return problem
        return None


@section("firmware")
class Firmware:
    backend: str = key(("Vitis", "Vivado"), "hls4ml backend")
    io_type: str = key(("io_stream", "io_parallel"), "io_stream for CNNs (io_parallel unrolls convolutions)")
    strategy: str = key(("Latency", "Resource"), "hls4ml strategy")
    reuse_factor: int = key("[1, inf)", "multiplications per multiplier")
    clock_period_ns: float = key("(0, inf)", "target clock period (ns)")
    part: str = key(None, "FPGA part (ccstae/firmware/convert.py checks the family)")
    csim_patterns_per_level: int = key("[0, inf)", "noisy test patterns per level in tb_data")
    predict_patterns_per_level: int = key("[0, inf)", "test patterns per level through hls4ml's C++ (0: all)")
    frontend_pixels_per_clock: int = key("[1, 64]", "raw pixels per AXI-Stream word of the front end")
    frontend_patterns_per_level: int = key("[0, inf)", "raw-count patterns per level through the front-end C-sims")
    centroid_testbench_patterns_per_level: int = key("[0, inf)", "raw-count patterns per level through the "
                                                     "centroid core's g++ testbench (its ctypes library takes all)")


@section("sweep")
class Sweep:
    mode: str = key(("one_at_a_time", "product"), "each axis alone around the config, or every combination")
    input_binning: list[int] = key("[1, 64]", "input binnings to try", n=0)
    bits: list[int] = key(BITS, "weight = bias = activation bits to try", n=0)
    sparsity: list[float] = key("[0, 1)", "sparsities to try", n=0)
    reuse_factor: list[int] = key("[1, inf)", "reuse factors to try", n=0)
    strategy: list[str] = key(("Latency", "Resource"), "strategies to try", n=0)
    io_type: list[str] = key(("io_stream", "io_parallel"), "io types to try", n=0)
    eval_scan: list[int] = key("[0, inf)", "top-left rows x cols of each test scan evaluated (0: all)", n=2)
    testbench: bool = key(None, "also run the g++ testbench per variant")
    detectors: list[str] = key(None, "detectors to recommend for (ccstae/firmware/estimate.py DETECTORS)")
    parts: list[str] = key(None, "parts to fit; the first is the one recommendations must fit")
    goal_patterns_per_s: float = key("(0, inf)", "throughput target")
    goal_latency_us: float = key("(0, inf)", "latency target (us)")
    goal_mae_ratio: float = key("(0, inf)", "firmware MAE at most this times the float MAE")
    test_counts: list[float] = key("(0, inf)", "extra test sets at these doses (electrons per pattern)")
    test_presets: list[str] = key(None, "extra test sets from these presets or TOML configs")


@section("robustness")
class Robustness:
    fixed_levels: list[float] = key("[0, 1)", "one fixed-noise training regime per level")
    modes: list[str] = key(("mixed", "curriculum", "none"), "more regimes over [train] noise_levels")
    test_levels: list[float] = key("[0, 1)", "background levels w of the test scans", n=0)
    seeds: list[int] = key("[0, inf)", "test scan seeds: each a new sample with its own noise", n=0)
    models: list[str] = key(("float", "quantized", "firmware"), "models evaluated", n=0)
    firmware_patterns: int = key("[0, inf)", "C-simulated patterns per test cube (0: all)")
    baseline: bool = key(None, "run py4DSTEM on the same cubes")
    test_counts: list[float] = key("(0, inf)", "extra test sets at these doses (electrons per pattern)")
    test_presets: list[str] = key(None, "extra test sets from these presets or TOML configs")

    @staticmethod
    def check(r: dict) -> str | None:
        if not r["fixed_levels"] and not r["modes"]:
            return "no training regime (fixed_levels and modes are both empty)"
        return None


def fixed_point_problem(name: str, bits, integer) -> str | None:
    """The one check of a fixed-point format (quant/qmodel.QuantSpec uses it too)."""
    if not 2 <= bits <= 32 or not 0 <= integer < bits:
        return f"{name}_bits={bits}, {name}_integer={integer}: need 2 <= bits <= 32 and 0 <= integer < bits"
    return None


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

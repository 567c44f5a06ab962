"""The grid of `ccstae sweep`: which firmware variants a [sweep] section names, each one's
config, stage key and run folders.

A variant is one point of the grid: input binning, weight/activation bits, sparsity, reuse
factor, strategy, io type. Layout: runs/<name>/float and runs/<name>/q<bits>-s<pct> for the
config's own binning (the very runs `make hls` makes, so they are reused), runs/<name>/bin<b>/...
for other binnings.
"""
from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

from ccstae.firmware import convert
from ccstae.pipeline import stages
from ccstae.core.config import validate
from ccstae.core.errors import UserError

AXES = ("input_binning", "bits", "sparsity", "reuse_factor", "strategy", "io_type")


# ----------------------------------------------------------------------------- the grid

def baseline(cfg: dict) -> dict:
    """The variant the config itself describes ([model], [quant], [firmware])."""
    fw = cfg["firmware"]
    return {"input_binning": int(cfg["model"]["input_binning"]), "bits": int(cfg["quant"]["weight_bits"]),
            "sparsity": float(cfg["quant"]["sparsity"]), "reuse_factor": int(fw["reuse_factor"]),
            "strategy": str(fw["strategy"]), "io_type": str(fw["io_type"])}


def variant_name(v: dict) -> str:
    """Stable, file-safe name: the resume key on disk, e.g. b1-q8-s50-rf1-lat-stream."""
    return (f"b{v['input_binning']}-q{v['bits']}-s{int(round(100 * v['sparsity']))}-rf{v['reuse_factor']}"
            f"-{v['strategy'][:3].lower()}-{v['io_type'].replace('io_', '')}")


def grid(cfg: dict) -> list[dict]:
    """The variants of cfg["sweep"], validated, without duplicates, in a stable order.

    one_at_a_time: the baseline, then each listed value of each axis with the other axes at
    the baseline (a study of each knob). product: every combination of the listed values.
    """
    validate(cfg)  # types and ranges of every axis (ccstae/core/config.py)
    s = cfg["sweep"]
    base = baseline(cfg)
    if s["mode"] == "product":
        raw = [dict(zip(AXES, values)) for values in itertools.product(*(s[a] for a in AXES))]
    else:
        raw = [base] + [dict(base, **{axis: value}) for axis in AXES for value in s[axis]]
    out, seen = [], set()
    for v in raw:
        v = _checked(cfg, v)
        if variant_name(v) not in seen:
            seen.add(variant_name(v))
            out.append(v)
    return out


def _checked(cfg: dict, v: dict) -> dict:
    """One variant with canonical spellings; UserError for any impossible value, before any work."""
    v = dict(v)
    spec = convert.FirmwareSpec.from_config(dict(cfg["firmware"], reuse_factor=v["reuse_factor"],
                                                 strategy=v["strategy"], io_type=v["io_type"]))
    v.update(reuse_factor=spec.reuse_factor, strategy=spec.strategy, io_type=spec.io_type)
    v["bits"], v["sparsity"], v["input_binning"] = int(v["bits"]), float(v["sparsity"]), int(v["input_binning"])
    b, pattern = v["input_binning"], int(cfg["simulate"]["pattern"])
    if b < 1 or pattern % b:
        raise UserError(f"sweep input_binning {b} does not divide the {pattern}-pixel pattern")
    return v


def variant_config(cfg: dict, v: dict) -> dict:
    """The full config of one variant: the sweep's config with the variant's settings applied."""
    c = copy.deepcopy(cfg)
    c["model"]["input_binning"] = v["input_binning"]
    c["quant"]["weight_bits"] = c["quant"]["bias_bits"] = c["quant"]["activation_bits"] = v["bits"]
    c["quant"]["sparsity"] = v["sparsity"]
    c["firmware"].update(reuse_factor=v["reuse_factor"], strategy=v["strategy"], io_type=v["io_type"])
    return c


def settings(cfg: dict, v: dict) -> dict:
    """The config a variant's result is made from."""
    c = variant_config(cfg, v)
    s = {k: c[k] for k in ("simulate", "noise", "model", "train", "quant", "firmware")}
    s["eval"] = {"eval_scan": cfg["sweep"]["eval_scan"], "testbench": cfg["sweep"]["testbench"]}
    return json.loads(json.dumps(s))  # as it reads back from disk (tuples -> lists)


def variant_key(cfg: dict, v: dict, data_key: str) -> str:
    """The stage key of one variant's record: its settings, the test data, packages and the code
    of every stage it runs (ccstae/pipeline/stages.py). A finished record is reused only under the same key."""
    code = ["float", "qat", "ccstae.studies.sweep_grid", "ccstae.studies.sweep_eval", "ccstae.firmware.vendor"]
    return stages.key_of(stages.made_from("firmware", cfg, settings(cfg, v), {"data": data_key},
                                          extra_code=code, extra_packages=["tensorflow-model-optimization"]))


def run_dirs(cfg: dict, v: dict, root: Path) -> tuple[Path, Path]:
    """(float run, QAT run) of a variant. The config's own binning uses `make hls`'s folders."""
    base = Path(root) / "runs" / cfg["name"]
    if v["input_binning"] != int(cfg["model"]["input_binning"]):
        base = base / f"bin{v['input_binning']}"
    return base / "float", base / f"q{v['bits']}-s{int(round(100 * v['sparsity']))}"

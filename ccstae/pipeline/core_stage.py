"""The centroid core's stage of `make hls` and `ccstae hls --core` (issue 23).

    check_choice(core)                               # "encoder", "centroid" or "both"
    result, c = ensure_core(cfg, data, root, level_name)   # firmware/centroid_stage.check_core, kept by its key
    s = core_only(cfg, data, root, watch, level_name)      # --core centroid: no training at all

The core's stage has its own folder (hls_projects/<name>-centroid) and key: it is made from the
data and the config keys it reads, never from a trained run (its reference comes from the
training cube), so `--core encoder` and `--core both` share the encoder's stages and `--core
centroid` trains nothing. `both` is two designs side by side, each C-simulated on its own; one
top with two output streams is not built.
"""
from __future__ import annotations

import json
from pathlib import Path

from ccstae.analysis.evaluate import truth_maps
from ccstae.analysis.floor import skill_lines
from ccstae.core.data_io import open_cube
from ccstae.core.outputs import write_json
from ccstae.core.errors import UserError
from ccstae.firmware import centroid_estimate, centroid_stage
from ccstae.pipeline import stages

CORES = ("encoder", "centroid", "both")
DONE = "centroid.json"
LAP = "centroid core: reference + both C-simulations + accuracy"


def check_choice(core: str) -> None:
    if core not in CORES:
        raise UserError(f"--core {core!r}: choose one of {', '.join(CORES)}")


def core_dir(cfg: dict, root: Path = Path(".")) -> Path:
    return Path(root) / "hls_projects" / f"{cfg['name']}-centroid"


def core_description(cfg: dict, data: stages.StageResult) -> dict:
    """What the core's result is made from: the data, the config keys stream_params and
    check_core read, the packages and the core's code (Python and C++)."""
    m = cfg["model"]
    config = {"model": {k: m[k] for k in ("input_binning", "input_crop", "central_mask")},
              "noise": {"counts": cfg["noise"]["counts"]}, "quant": {"count_bits": cfg["quant"]["count_bits"]},
              "firmware": {k: cfg["firmware"].get(k) for k in ("clock_period_ns", "part",
                                                              "centroid_testbench_patterns_per_level")},
              "sweep": {"detectors": cfg.get("sweep", {}).get("detectors")}}
    return stages.made_from("centroid", cfg, config, {"data": data.key})


def ensure_core(cfg: dict, data: stages.StageResult, root: Path, level_name=str) -> tuple:
    """(StageResult, summary.json's "centroid" entry): made, or read back when current."""
    prj = core_dir(cfg, root)

    def build():
        c = centroid_stage.check_core(cfg, data.outputs["train"].path, data.outputs["tests"], prj, level_name)
        write_json(prj / DONE, c)
        return c

    result = stages.run_folder_stage("centroid", prj, core_description(cfg, data), DONE,
                                     [DONE, "firmware/centroid_params.h"], build)
    return result, result.outputs["result"] if result.ran else json.loads((prj / DONE).read_text())


def same_stream(c: dict, encoder_run: Path) -> bool:
    """Does the encoder's front end (its QAT run's preprocessing) hand on the stream the core read?"""
    from ccstae.model.preprocess import PreprocessParams

    return centroid_stage.stream_description(PreprocessParams.from_run(encoder_run)) == c["stream"]


def core_only(cfg: dict, data: stages.StageResult, root: Path, watch, level_name=str) -> dict:
    """`ccstae hls --core centroid`: the core's stage and the floors beside it; summary.json in
    its folder."""
    with watch(LAP):
        result, c = ensure_core(cfg, data, root, level_name)
    period = c["core"]["period_deg"] * 3.141592653589793 / 180
    skill = {}
    with watch("floors (flat map, noise floor, centroids)"):
        for w, path in data.outputs["tests"].items():
            with open_cube(path) as cube:
                gt = cube.ground_truth
            if gt is not None:
                for label, m in skill_lines(path, truth_maps(gt), period).items():
                    skill.setdefault(label, {})[level_name(w)] = m
    summary = {"config": cfg["name"], "cores": "centroid", "centroid": c, "skill_lines": skill,
               "stages": {r.stage: {"path": str(r.path), "key": r.key, "ran": r.ran, "seconds": r.seconds}
                          for r in (data, result)},
               "times_s": dict(watch.times), "project": str(core_dir(cfg, root))}
    write_json(core_dir(cfg, root) / "summary.json", summary)
    return summary


def lines(c: dict, encoder_total: dict | None = None) -> list[str]:
    """The core's lines above make hls's MAE table: its C-simulations, the stream, its resources."""
    out = [centroid_stage.csim_line(c)]
    if c.get("same_stream") is False:
        out.append("  NOTE: the core read another binned/cropped/masked stream than the encoder's front end")
    return out + centroid_estimate.lines(c["estimate"], encoder_total)


def format_core_only(s: dict, width: int, maps) -> list[str]:
    """`--core centroid`'s table: the core's row and the floors' per level."""
    c = s["centroid"]
    out = [f"\n{s['config']}: centroid core only (no encoder)", *lines(c), "",
           "strain MAE (theta in degrees) per test noise level w; slope and correlation r of exx/eyy against the truth:",
           f"{'w':>5} {'model':>{width}} " + " ".join(f"{k:>8}" for k in maps)]
    for w in c["accuracy"]:
        out.append(centroid_stage.accuracy_line(c, w, width))
        for label, per_level in s["skill_lines"].items():
            if w in per_level:
                m = per_level[w]
                out.append(f"{w:>5} {label:>{width}} " + " ".join(
                    f"{'-':>8}" if k not in m else (f"{m[k]:8.5f}" if k != "theta" else f"{m[k]:8.3f}") for k in maps))
    out.append("\ntimes (s): " + ", ".join(f"{k} {v}" for k, v in s["times_s"].items()))
    out.append(f"wrote {s['project']}/summary.json")
    return out

"""The pipeline's stages, each kept or redone by a content hash of what it is made from.

    ensure_data (training cube + test cubes) -> ensure_float -> ensure_qat -> ensure_firmware

`make hls` (ccstae/pipeline/hls.py), `ccstae sweep` and `ccstae robustness` all go through
these functions, so "is this result current?" has one answer everywhere.

A stage's KEY is the SHA-256 of everything it is made from (`made_from`):
  - the config keys it reads (whole sections, or the named keys of one),
  - the keys of the stages it reads (a Merkle chain: a new training cube makes every later
    stage stale) and the fingerprints of files it reads (the float encoder for QAT...),
  - the versions of the packages that compute it (numpy, tensorflow, qkeras, hls4ml, abtem...),
  - the project's own source files for that stage (any edit redoes the stage).

Where a result lives:
  - cubes are named by their key (data/<name>/train-<key>.h5, test-w0.25-s1234-<key>.h5):
    a file with that name IS the current result, so parallel workers never race on a stamp;
  - runs and HLS projects keep their readable folders (runs/<name>/float, hls_projects/...)
    and hold stage.json: {"key", "made_from", "products": {file: sha256}}. A folder is reused
    only when its key matches and its products are unchanged; a folder with another key, or
    none (made before stages were keyed), is removed and made again, never silently reused.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from ccstae.core.outputs import write_json
from ccstae.pipeline.closure import closure

ROOT = Path(__file__).resolve().parents[2]  # the repository root (ccstae/pipeline/stages.py)
STAGE_FILE = "stage.json"

# The project's own code each stage runs: the modules named here and every ccstae module they import
# (ccstae/pipeline/closure.py), plus the non-Python files the stage reads (globs from the repository
# root). Edit any of them and the stage, and every later one, is redone.
CODE = {
    "data": ("ccstae.physics.scans",),
    "float": ("ccstae.model.train",),
    "qat": ("ccstae.quant.qat",),
    "firmware": ("ccstae.pipeline.hls",),
    "centroid": ("ccstae.firmware.centroid_stage",),  # the centroid core (ccstae/pipeline/core_stage.py)
}
FILES = {"firmware": ("ccstae/firmware/calibration/*", "ccstae/firmware/frontend/*"),
         "centroid": ("ccstae/firmware/centroid/*", "ccstae/firmware/frontend/ccstae_axis.h")}
PACKAGES = {
    "data": ("numpy", "scipy", "h5py"),
    "float": ("numpy", "tensorflow", "h5py"),
    "qat": ("numpy", "tensorflow", "qkeras", "tensorflow-model-optimization", "h5py"),
    "firmware": ("numpy", "tensorflow", "qkeras", "hls4ml"),
    "centroid": ("numpy", "scipy", "h5py", "hls4ml"),  # hls4ml: the ap_types headers
}
# [noise] keys that describe the test scans, not the noise model: no float or QAT run reads them.
NOISE_TEST_KEYS = ("test_levels", "test_seed")


@dataclass
class StageResult:
    """What a stage made (or found current): where, from what (key), whether it ran, how long."""

    stage: str
    path: Path
    key: str
    ran: bool
    seconds: float = 0.0
    outputs: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- keys

@lru_cache(maxsize=None)
def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def source_hashes(modules=(), patterns=()) -> dict:
    """{relative path: sha256} of the import closure of `modules` and the files matching the globs."""
    files = set(closure(tuple(modules))) | {p for pat in patterns for p in ROOT.glob(pat) if p.is_file()}
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


def stage_sources(names) -> dict:
    """source_hashes of stages (by name: CODE and FILES) and of modules (by dotted name)."""
    modules = [m for n in names for m in (CODE.get(n, ()) if n in CODE or n in FILES else (n,))]
    return source_hashes(modules, [g for n in names for g in FILES.get(n, ())])


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def uses_abtem(cfg: dict) -> bool:
    return cfg.get("simulate", {}).get("engine", "kinematic") == "multislice"


def made_from(stage: str, cfg: dict, config: dict, inputs: dict, extra_code=(), extra_packages=()) -> dict:
    """The full description a stage's key hashes. config: {section: values} it reads; extra_code:
    stage names (their code and files) or module names whose code the result also depends on."""
    packages = list(PACKAGES.get(stage, ())) + list(extra_packages)
    if uses_abtem(cfg):
        packages += ["abtem", "ase"]
    return json.loads(json.dumps({
        "stage": stage, "config": config, "inputs": inputs,
        "packages": {p: package_version(p) for p in sorted(set(packages))},
        "sources": stage_sources([*([stage] if stage in CODE or stage in FILES else []), *extra_code]),
    }, default=str))


def key_of(description: dict) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()


def _noise_model(cfg: dict) -> dict:
    return {k: v for k, v in cfg["noise"].items() if k not in NOISE_TEST_KEYS}


# ----------------------------------------------------------------------------- folder stages

def current(folder: Path, key: str, done_file: str) -> bool:
    """A finished folder stage made from exactly `key`, its products untouched since."""
    stamp = Path(folder) / STAGE_FILE
    if not (Path(folder) / done_file).exists() or not stamp.exists():
        return False
    try:
        saved = json.loads(stamp.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if saved.get("key") != key or "products" not in saved:
        return False
    return all((Path(folder) / f).exists() and file_sha256(Path(folder) / f) == sha
               for f, sha in saved["products"].items())


def _started_with(folder: Path, key: str) -> bool:
    try:
        return json.loads((Path(folder) / STAGE_FILE).read_text()).get("key") == key
    except (OSError, json.JSONDecodeError):
        return False


def run_folder_stage(stage: str, folder: Path, description: dict, done_file: str, products, build,
                     resumable: bool = False, outputs: dict | None = None) -> StageResult:
    """Reuse `folder` when current for `description`, else (re)make it with build().

    resumable: a folder started with the same key and interrupted is handed to build() as it is
    (the float run resumes from its checkpoint); anything else is removed first."""
    folder = Path(folder)
    key = key_of(description)
    if current(folder, key, done_file):
        return StageResult(stage, folder, key, ran=False, outputs=outputs or {})
    if not (resumable and _started_with(folder, key) and not (folder / done_file).exists()):
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / STAGE_FILE, {"key": key, "made_from": description})  # started, not done
    t0 = time.time()
    result = build()
    files = [f for f in products if (folder / f).exists()]
    write_json(folder / STAGE_FILE, {"key": key, "made_from": description,
                                     "products": {f: file_sha256(folder / f) for f in files}})
    return StageResult(stage, folder, key, ran=True, seconds=round(time.time() - t0, 1),
                       outputs={**(outputs or {}), "result": result})


# ----------------------------------------------------------------------------- data

def train_cube_description(cfg: dict) -> dict:
    t = cfg["train"]
    return made_from("data", cfg, {"simulate": cfg["simulate"],
                                   "train": {k: v for k, v in t.items() if k.startswith("sample_")}}, {})


def test_cube_description(cfg: dict, level: float, seed: int, counts: float | None = None) -> dict:
    noise = dict(_noise_model(cfg), counts=float(counts if counts is not None else cfg["noise"]["counts"]))
    config = {"simulate": cfg["simulate"], "noise": noise}
    if cfg.get("distortion") and _distorted(cfg):  # only then: undistorted cubes keep their description
        config["distortion"] = cfg["distortion"]
    return made_from("data", cfg, config, {"level": float(level), "seed": int(seed)})


def _distorted(cfg: dict) -> bool:
    from ccstae.physics.distort import DistortionParams

    return DistortionParams.from_config(cfg).enabled


def ensure_train_cube(cfg: dict, folder: Path, progress: bool = False) -> StageResult:
    """The config's clean simulated training cube, named by its key."""
    from ccstae.physics import scans

    key = key_of(train_cube_description(cfg))
    path = Path(folder) / f"train-{key[:16]}.h5"
    if path.exists():
        return StageResult("data", path, key, ran=False)
    t0 = time.time()
    path.parent.mkdir(parents=True, exist_ok=True)
    scans.simulate_training_sample(cfg, path, progress=progress)
    return StageResult("data", path, key, ran=True, seconds=round(time.time() - t0, 1))


def test_cube_path(folder: Path, level: float, seed: int, counts: float | None, key: str) -> Path:
    dose = "" if counts is None else f"-n{float(counts):g}"
    return Path(folder) / f"test-w{float(level):.2f}{dose}-s{int(seed)}-{key[:16]}.h5"


def ensure_test_cube(cfg: dict, folder: Path, level: float, seed: int, counts: float | None = None,
                     progress: bool = False) -> StageResult:
    """One noisy simulated test scan (level w, seed, electrons per pattern; None: the config's
    [noise] counts), named by its key."""
    from ccstae.physics.scans import simulate_scan

    key = key_of(test_cube_description(cfg, level, seed, counts))
    path = test_cube_path(folder, level, seed, counts, key)
    if path.exists():
        return StageResult("data", path, key, ran=False)
    t0 = time.time()
    path.parent.mkdir(parents=True, exist_ok=True)
    simulate_scan(cfg, path, noise_w=float(level), seed=int(seed), counts=counts, progress=progress)
    return StageResult("data", path, key, ran=True, seconds=round(time.time() - t0, 1))


def ensure_data(cfg: dict, folder: Path, progress: bool = False) -> StageResult:
    """`make hls`'s data: the training cube and one test scan per [noise] test level.

    outputs: {"train": StageResult, "tests": {w: path}}; key: of all of them together."""
    t0 = time.time()
    train = ensure_train_cube(cfg, folder, progress)
    tests = {float(w): ensure_test_cube(cfg, folder, w, int(cfg["noise"]["test_seed"]), progress=progress)
             for w in cfg["noise"]["test_levels"]}
    key = key_of({"train": train.key, "tests": {str(w): t.key for w, t in tests.items()}})
    ran = train.ran or any(t.ran for t in tests.values())
    return StageResult("data", Path(folder), key, ran, round(time.time() - t0, 1) if ran else 0.0,
                       {"train": train, "tests": {w: t.path for w, t in tests.items()},
                        "test_keys": {w: t.key for w, t in tests.items()}})


# ----------------------------------------------------------------------------- runs

def float_description(cfg: dict, train_cube: StageResult) -> dict:
    config = {"simulate": cfg["simulate"], "noise": _noise_model(cfg), "model": cfg["model"], "train": cfg["train"]}
    return made_from("float", cfg, config, {"train_cube": train_cube.key})


def reused(stage: str, key: str, folders, own: Path) -> StageResult | None:
    """A finished run of this very key in another folder (e.g. `make hls`'s runs/ for a study)."""
    for d in folders:
        if Path(d) != Path(own) and current(d, key, "DONE"):
            return StageResult(stage, Path(d), key, ran=False)
    return None


def ensure_float(cfg: dict, train_cube: StageResult, run_dir: Path, progress: bool = False,
                 reuse=()) -> StageResult:
    """The float run of `cfg` on the training cube: a current run in `reuse` folders (e.g. `make
    hls`'s runs/<name>/float for a study) or in run_dir is reused, an interrupted one in run_dir
    resumes from its checkpoint, else it is trained."""
    from ccstae.model import train

    description = float_description(cfg, train_cube)
    found = reused("float", key_of(description), reuse, run_dir)
    if found:
        return found

    def build():
        resume = (Path(run_dir) / "checkpoints" / "checkpoint").exists()
        return train.train(cfg, train_cube.path, run_dir, resume=resume, progress=progress)

    return run_folder_stage("float", run_dir, description, "DONE", ["encoder.h5", "reference.npy", "DONE"],
                            build, resumable=True)


def qat_description(cfg: dict, float_run: StageResult) -> dict:
    from ccstae.model.run import encoder_fingerprint

    return made_from("qat", cfg, {"quant": cfg["quant"]},
                     {"float_run": float_run.key, "float_encoder_sha256": encoder_fingerprint(float_run.path)})


def ensure_qat(cfg: dict, float_run: StageResult, q_dir: Path, progress: bool = False, reuse=()) -> StageResult:
    """The QAT run of the float run with `cfg`'s [quant] (which wins over the float run's).
    QAT is short: an interrupted one starts again."""
    from ccstae.quant import qat

    description = qat_description(cfg, float_run)
    found = reused("qat", key_of(description), reuse, q_dir)
    if found:
        return found

    def build():
        return qat.quantize(float_run.path, q_dir, progress=progress, quant_section=cfg["quant"])

    return run_folder_stage("qat", q_dir, description, "DONE",
                            ["encoder.h5", "reference.npy", "quant.json", "DONE"], build)


# ----------------------------------------------------------------------------- firmware

def firmware_description(cfg: dict, data: StageResult, float_run: StageResult, q_run: StageResult,
                         extra_config: dict | None = None, extra_code=()) -> dict:
    from ccstae.model.run import encoder_fingerprint

    config = {"quant": cfg["quant"], "firmware": cfg["firmware"], "noise": cfg["noise"], **(extra_config or {})}
    return made_from("firmware", cfg, config,
                     {"data": data.key, "float_run": float_run.key, "quant_run": q_run.key,
                      "float_encoder_sha256": encoder_fingerprint(float_run.path),
                      "encoder_sha256": encoder_fingerprint(q_run.path)}, extra_code=extra_code)


def generated_sources(prj: Path) -> list[str]:
    """The HLS project's generated C++ and weights: recorded as products, so a project edited by
    hand (or regenerated by another converter) is never mistaken for this stage's result."""
    prj = Path(prj)
    return sorted(str(p.relative_to(prj)) for p in (prj / "firmware").rglob("*")
                  if p.is_file() and p.suffix in (".cpp", ".h", ".txt") and "ap_types" not in p.parts)


def ensure_firmware(cfg: dict, data: StageResult, float_run: StageResult, q_run: StageResult, prj: Path,
                    build) -> StageResult:
    """The firmware stage (convert, C-simulate, check, measure) of the QAT run in HLS project
    `prj`: build() makes it and writes prj/summary.json; reused when current."""
    description = firmware_description(cfg, data, float_run, q_run)

    def products():
        return ["myproject_test.cpp"] + generated_sources(prj)  # not summary.json: its times change

    key = key_of(description)
    if current(prj, key, "summary.json"):
        return StageResult("firmware", Path(prj), key, ran=False)
    shutil.rmtree(prj, ignore_errors=True)  # no stale file of an earlier project survives
    Path(prj).mkdir(parents=True, exist_ok=True)
    write_json(Path(prj) / STAGE_FILE, {"key": key, "made_from": description})
    t0 = time.time()
    result = build()
    write_json(Path(prj) / STAGE_FILE, {"key": key, "made_from": description,
                                        "products": {f: file_sha256(Path(prj) / f) for f in products()
                                                     if (Path(prj) / f).exists()}})
    return StageResult("firmware", Path(prj), key, ran=True, seconds=round(time.time() - t0, 1),
                       outputs={"result": result})

"""The package's layout: rooms that import one way, and stage keys computed from the imports."""
import tomllib
from pathlib import Path

import pytest

from ccstae.pipeline import closure as C

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ["core", "physics", "model", "analysis", "quant", "firmware", "pipeline", "studies", "cli"]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_rooms_import_one_way():
    """A room imports only the rooms before it in ROOMS (ccstae/__init__.py lists them)."""
    backward = []
    for f in sorted((ROOT / "ccstae").rglob("*.py")):
        name = module_name(f)
        if name == "ccstae":
            continue
        room = name.split(".")[1]
        for m in C._imports(f, name, C.PACKAGE_DIR):
            used = m.split(".")[1] if m != "ccstae" else None
            if used and ROOMS.index(used) > ROOMS.index(room):
                backward.append(f"{name} -> {m}")
    assert backward == []
    assert sorted(p.name for p in (ROOT / "ccstae").iterdir() if p.is_dir() and p.name != "__pycache__") == \
        sorted(ROOMS)


def test_only_ccstae_is_installed():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert all(p == "ccstae_configs" or p == "ccstae" or p.startswith("ccstae.") for p in packages)
    on_disk = {module_name(p.parent) for p in (ROOT / "ccstae").rglob("__init__.py")}
    # The firmware's data folders (C++, the estimator's calibration) are packages of data only: listed,
    # so setuptools installs them without its "would be ignored" warning.
    data_only = {module_name(p) for p in (ROOT / "ccstae" / "firmware").iterdir()
                 if p.is_dir() and p.name != "__pycache__" and not (p / "__init__.py").exists()}
    assert on_disk | data_only == {p for p in packages if p != "ccstae_configs"}  # a new room is installed too


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_renamed_module_stays_in_the_closure(tmp_path):
    """The hand list this replaced dropped a renamed file from the key without an error."""
    pkg = tmp_path / "ccstae"
    write(pkg / "__init__.py", "")
    write(pkg / "room" / "__init__.py", "")
    write(pkg / "room" / "stage.py", "import numpy\nfrom ccstae.room import helper\n\ndef f():\n"
                                     "    from ccstae.room.late import g  # function-local\n")
    write(pkg / "room" / "helper.py", "from . import deep\n")
    write(pkg / "room" / "deep.py", "")
    write(pkg / "room" / "late.py", "def g(): pass\n")
    write(pkg / "room" / "unused.py", "")
    names = lambda: sorted(str(p.relative_to(pkg)) for p in C.closure(("ccstae.room.stage",), pkg))  # noqa: E731
    assert names() == ["__init__.py", "room/__init__.py", "room/deep.py", "room/helper.py", "room/late.py",
                       "room/stage.py"]
    (pkg / "room" / "helper.py").rename(pkg / "room" / "renamed.py")
    write(pkg / "room" / "stage.py", "from ccstae.room import renamed\n")
    assert names() == ["__init__.py", "room/__init__.py", "room/deep.py", "room/renamed.py", "room/stage.py"]
    with pytest.raises(ValueError, match="ccstae.room.gone"):
        C.closure(("ccstae.room.gone",), pkg)


def test_stage_keys_cover_what_each_stage_imports():
    from ccstae.pipeline import stages

    code = {s: set(stages.stage_sources([s])) for s in stages.CODE}
    assert {"ccstae/physics/simulate.py", "ccstae/physics/multislice.py", "ccstae/physics/strain.py"} <= code["data"]
    assert {"ccstae/model/train.py", "ccstae/model/network.py", "ccstae/model/stn.py", "ccstae/model/preprocess.py",
            "ccstae/physics/noise.py", "ccstae/physics/lattice.py", "ccstae/model/health.py"} <= code["float"]
    assert code["float"] < code["qat"]  # QAT starts from the float network's code
    assert {"ccstae/firmware/convert.py", "ccstae/firmware/csim.py", "ccstae/pipeline/hls.py",
            "ccstae/firmware/calibration/fit.json", "ccstae/firmware/frontend/ccstae_frontend.cpp"} <= code["firmware"]
    assert not any(p.startswith(("ccstae/studies/", "ccstae/cli/")) for s in code for p in code[s])

"""The config schema (ccstae/core/config.py): every key of default.toml typed, ranged and documented;
bad values named before anything runs; `ccstae config show|check`; presets found when installed."""
import shutil
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from ccstae.core import config
from ccstae.core.config import CONFIG_DIR, ConfigError, load_config, preset_names
from ccstae.core.schema import SCHEMA

ROOT = Path(__file__).resolve().parent.parent


def test_every_key_of_default_toml_is_in_the_schema_and_back():
    """A key added to default.toml without a schema line (or the reverse) fails here, not at a user."""
    with open(CONFIG_DIR / "default.toml", "rb") as f:
        default = tomllib.load(f)
    sections = {k for k, v in default.items() if isinstance(v, dict)}
    assert sections == set(SCHEMA), f"sections without a schema: {sections - set(SCHEMA)}; " \
                                    f"schema without a section: {set(SCHEMA) - sections}"
    for name, cls in SCHEMA.items():
        known = {f.name for f in fields(cls)}
        assert set(default[name]) == known, (f"[{name}] keys without a schema line: {set(default[name]) - known}; "
                                             f"schema lines without a key: {known - set(default[name])}")
        for f in fields(cls):
            assert f.metadata["doc"], f"{name}.{f.name} has no doc"
    config.validate(default, where="default.toml")


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_is_valid(preset):
    assert load_config(preset)["name"]


def test_a_config_extends_another_preset(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('extends = "ms-tiny"\n[train]\nepochs = 3\n')
    cfg, base = load_config(path), load_config("ms-tiny")
    assert cfg["train"]["epochs"] == 3 and cfg["name"] == "study"
    assert cfg["simulate"] == base["simulate"]  # everything else as the preset it extends
    for bad in ('extends = "study"\n', 'extends = "nope"\n', 'extends = "x.toml"\n'):
        path.write_text(bad)
        with pytest.raises(ConfigError):
            load_config(path)


def test_stated_tells_a_users_setting_from_the_defaults(tmp_path):
    """`ccstae train --input` chooses noise_mode = "auto" unless the config states a mode itself."""
    only_binning = tmp_path / "mine.toml"
    only_binning.write_text("[model]\ninput_binning = 2\n")
    assert not config.stated(only_binning, "train", "noise_mode")
    assert not config.stated("default", "train", "noise_mode")  # the base every config merges over
    assert config.stated("ms-mos2-single", "train", "noise_mode")  # the preset's own choice
    extends = tmp_path / "study.toml"
    extends.write_text('extends = "ms-mos2-single"\n[train]\nepochs = 3\n')
    assert config.stated(extends, "train", "noise_mode")  # inherited from the preset it extends
    assert config.stated(extends, "train", "epochs") and not config.stated(extends, "quant", "epochs")
    with pytest.raises(ConfigError):
        config.stated(tmp_path / "missing.toml", "train", "noise_mode")


@pytest.mark.parametrize("text, words", [
    ("[train]\nnoise_levels = [1.2]\n", ["train.noise_levels", "1.2", "[0, 1)"]),
    ("[quant]\nbias_bits = 1\n", ["quant.bias_bits", "[2, 32]"]),
    ("[quant]\ninput_integer = 8\n", ["input_bits=8, input_integer=8"]),
    ("[train]\nnoise_mode = \"loud\"\n", ["train.noise_mode", "mixed"]),
    ("[train]\nepochs = 2.5\n", ["train.epochs", "integer"]),
    ("[sweep]\nbits = []\n", ["sweep.bits", "empty"]),
    ("[simulate]\nscan = [4]\n", ["simulate.scan", "2 elements"]),
    ("[robustness]\nbaseline = 1\n", ["robustness.baseline", "true or false"]),
    ("[train]\nmask_inner = 0.3\nmask_outer = 0.2\n", ["mask_inner", "mask_outer"]),
])
def test_a_bad_value_is_named_with_its_range(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    for w in [str(path)] + words:
        assert w in str(e.value), str(e.value)


def test_schema_choices_match_the_code_that_reads_them():
    from ccstae.physics import crystal, lattice
    from ccstae.model import preprocess, train_config

    choices = lambda sec, key: {f.name: f.metadata for f in fields(SCHEMA[sec])}[key]["choices"]  # noqa: E731
    assert choices("model", "central_mask") == preprocess.CENTRAL_MASKS
    assert choices("model", "lattice_symmetry") == lattice.SYMMETRIES
    assert set(choices("simulate", "crystal")) == set(crystal.CRYSTALS)
    assert set(choices("train", "noise_mode")) == set(train_config.NOISE_MODES)


def test_quantspec_defaults_are_the_default_config():
    from ccstae.quant.qmodel import QuantSpec

    q = load_config("default")["quant"]
    spec = QuantSpec()
    for k in ("weight_bits", "bias_bits", "activation_bits", "input_bits", "input_integer", "activation_integer"):
        assert getattr(spec, k) == q[k], k
    assert QuantSpec.from_config(q) == spec


def test_config_show_and_check(cli, one_line_error, tmp_path):
    rc, out, _ = cli("config", "show", "tiny")
    assert rc == 0 and "[quant]" in out and "bias_bits = 8  # bits of every bias; [2, 32]" in out
    assert tomllib.loads(out.split("\n", 1)[1].replace("  #", "\n#"))["quant"]["bias_bits"] == 8
    rc, out, _ = cli("config", "check", "tiny")
    assert rc == 0 and "tiny: ok" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[robustness]\nseeds = [-1]\n")
    rc, _, err = cli("config", "check", bad)
    one_line_error(rc, err, "config", "robustness.seeds", "-1")


def test_presets_are_found_without_the_source_tree(tmp_path):
    """As a wheel installs them (pyproject: configs/ shipped as the package ccstae_configs)."""
    shutil.copytree(ROOT / "ccstae", tmp_path / "ccstae", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "configs", tmp_path / "site" / "ccstae_configs")
    code = "from ccstae.core.config import load_config, CONFIG_DIR; print(CONFIG_DIR.name, load_config('tiny')['name'])"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": f"{tmp_path}:{tmp_path / 'site'}", "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["ccstae_configs", "tiny"], out.stderr

"""Config schema, defaults, hashing; packaging pins in sync."""

import re

import pytest
import yaml
from conftest import REPO

from ledsweep import config as C


def test_committed_run_schema_is_up_to_date():
    committed = yaml.safe_load((REPO / "workflow" / "schemas" / "run.schema.yaml").read_text())
    assert committed == C.run_schema(), "run: python scripts/write_schema.py"


def test_every_schema_key_has_a_description_and_default():
    for key, prop in C.schema_leaf_paths().items():
        assert prop["description"], key
        assert key == "run_name" or "default" in prop, key


def test_defaults_are_filled_and_hash_ignores_identity():
    a = C.from_dict({"run_name": "a", "data": {"train_file": "x.jsonl", "test_file": "y.jsonl"}})
    b = C.from_dict(
        {"run_name": "b", "output_dir": "elsewhere", "data": {"train_file": "x.jsonl", "test_file": "y.jsonl"}}
    )
    assert a.training.learning_rate == 1.0e-3 and a.model.name == "scratch"
    assert C.config_sha256(a) == C.config_sha256(b)
    b.seed = 7
    assert C.config_sha256(a) != C.config_sha256(b)


def test_resolved_config_round_trips_through_yaml():
    cfg = C.load_config(REPO / "config" / "led_baseline.yaml")
    again = C.from_dict(yaml.safe_load(C.dump_yaml(cfg.to_dict())))
    assert again == cfg


def _pins(lines):
    return {
        m.group(1).lower(): m.group(2)
        for m in (re.match(r"^\s*-?\s*([A-Za-z0-9_.-]+)==(\S+)", ln) for ln in lines)
        if m
    }


def test_environment_yaml_pins_equal_requirements():
    req = _pins((REPO / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((REPO / "environment.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip) == req
    assert req["torch"] == "2.13.0"


def test_installed_versions_match_pins():
    """requirements.txt and the test tools of requirements-dev.txt (another pytest silently breaks the
    xdist groups the tiers rely on)."""
    from importlib.metadata import version

    for req in ("requirements.txt", "requirements-dev.txt"):
        for name, pin in _pins((REPO / req).read_text().splitlines()).items():
            assert version(name).split("+")[0] == pin, f"{req}: {name}"


def test_config_readme_key_table_is_up_to_date():
    import importlib.util

    spec = importlib.util.spec_from_file_location("write_schema", REPO / "scripts" / "write_schema.py")
    mod = importlib.util.module_from_spec(spec)
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    spec.loader.exec_module(mod)
    text = (REPO / "config" / "README.md").read_text()
    assert mod.readme_with_table(text) == text, "run: python scripts/write_schema.py"
    for key in C.schema_leaf_paths():
        assert f"`{key}`" in text, key


def test_a_huge_number_is_not_echoed_whole():
    """Issue 21: a 300-digit value was printed whole in the one-line error; it is shortened, naming its size."""
    data = yaml.safe_load((REPO / "tests" / "configs" / "tiny_run.yaml").read_text())
    data.setdefault("training", {})["learning_rate"] = 10**300
    with pytest.raises(C.ConfigError) as err:
        C.from_dict(data)
    message = str(err.value)
    assert "training.learning_rate: expected a value between" in message and "(301 digits)" in message
    assert len(message) < 200

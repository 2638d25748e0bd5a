"""Static guarantees: safe YAML only, no shell built from config, no remote code, safetensors only,
run folders cannot escape their parent."""

import re
from pathlib import Path

import pytest
from conftest import REPO

from ledsweep import config as C

SOURCES = [*REPO.glob("src/ledsweep/*.py"), *REPO.glob("scripts/*.py"), *REPO.glob("workflow/scripts/*.py")]
RULES = [REPO / "workflow" / "Snakefile", *REPO.glob("workflow/rules/*.smk")]


def test_only_safe_yaml_loading():
    for path in SOURCES:
        for line in path.read_text().splitlines():
            if re.search(r"yaml\.(load|load_all|unsafe_load|full_load)\(", line):
                assert "_StrictLoader" in line or "SafeLoader" in line, f"{path}: {line.strip()}"


def test_rules_build_no_shell_commands():
    """Rules run Python (`script:`, or a `run:` block calling the library), never a shell command."""
    for path in RULES:
        text = path.read_text()
        assert not re.search(r"^\s+shell:", text, re.M), f"{path} builds a shell command"
        assert not re.search(r"\bshell\(", text), f"{path} calls shell()"
    block = re.compile(r"^\s+run:\n((?:\s{8}.*\n)+)", re.M)
    runs = [m.group(1).strip() for path in RULES for m in block.finditer(path.read_text())]
    assert runs == ["write_run_config(params.config, output[0], log[0])"]  # the one run: block, a library call


def test_no_subprocess_shell_true():
    for path in SOURCES:
        assert "shell=True" not in path.read_text(), path


def test_remote_code_off_and_weights_from_safetensors_only():
    assert C.ModelConfig().trust_remote_code is False
    model_py = (REPO / "src/ledsweep/model.py").read_text()
    assert "use_safetensors=True" in model_py


@pytest.mark.parametrize("name", ["../x", "a/../../b", "/abs", "..", "a/b", ".hidden", "-rf", "a b", "a..b", ""])
def test_run_names_cannot_escape_results(name):
    with pytest.raises(C.ConfigError, match="run_name"):
        C.from_dict({"run_name": name, "data": {"train_file": "x.jsonl", "test_file": "y.jsonl"}})


def test_accepted_run_names_stay_inside_output_dir(tmp_path):
    cfg = C.from_dict(
        {
            "run_name": "ok.name-1_x",
            "output_dir": str(tmp_path),
            "data": {"train_file": "x.jsonl", "test_file": "y.jsonl"},
        }
    )
    assert cfg.run_dir.resolve().parent == Path(tmp_path).resolve()

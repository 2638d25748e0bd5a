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
    """Every yaml.load/load_all call names a safe Loader; the unsafe loaders are never called."""
    import ast

    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "yaml"):
                continue
            where = f"{path}:{node.lineno}"
            assert node.func.attr not in ("unsafe_load", "full_load", "unsafe_load_all", "full_load_all"), where
            if node.func.attr in ("load", "load_all"):
                loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
                if loader is None and len(node.args) > 1:
                    loader = node.args[1]
                assert loader is not None, f"{where}: yaml.{node.func.attr} without a Loader"
                text = ast.unparse(loader)
                assert "SafeLoader" in text or "_StrictLoader" in text, f"{where}: Loader={text}"


def test_rules_build_no_shell_commands():
    """Rules run Python (`script:`, or a `run:` block calling the library), never a shell command."""
    for path in RULES:
        text = path.read_text()
        assert not re.search(r"^\s+shell:", text, re.M), f"{path} builds a shell command"
        assert not re.search(r"\bshell\(", text), f"{path} calls shell()"
    block = re.compile(r"^\s+run:\n((?:\s{8}.*\n)+)", re.M)
    runs = [m.group(1).strip() for path in RULES for m in block.finditer(path.read_text())]
    # the run: blocks are single library calls, with the rule's own input/output/params/log
    assert sorted(" ".join(r.split()) for r in runs) == [
        "link_checkpoint( input.checkpoint, input.meta, output.checkpoint, output.meta, params.config, log[0], )",
        "write_run_config(params.config, output[0], log[0])",
    ], runs


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

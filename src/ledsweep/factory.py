"""Your own model code (`model.factory`): '<module>:<function>' or '<path/to/file.py>:<function>' names a
function `build(model_config: dict, tokenizer) -> transformers.PreTrainedModel` that builds a new
encoder-decoder from the run's `model.*` keys. Its source file is hashed (`record`): meta.json and each training
attempt carry the sha256, so a change to the code is a different run (a resume refuses it, verify names it).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError, one_line
from .runfolder import sha256_file

KEY = "model.factory"
RECORD_FILE = "ledsweep_factory.json"  # in a checkpoint/ built by a factory: how to build it again


def parse(spec: str) -> tuple[str, str]:
    """'<module or file.py>:<function>' -> (module or file, function)."""
    target, _, function = spec.rpartition(":")
    return target, function


def is_file_spec(spec: str) -> bool:
    return parse(spec)[0].endswith(".py")


def source_file(spec: str) -> Path | None:
    """The file that holds the factory: the .py named, or the module's own file (None: not found)."""
    target, _ = parse(spec)
    if is_file_spec(spec):
        path = Path(target).expanduser()
        return path.resolve() if path.is_file() else None
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        return None
    return Path(found.origin).resolve() if found and found.origin and Path(found.origin).is_file() else None


def record(spec: str) -> dict:
    """What meta.json records of the factory: the spec, its file and that file's sha256."""
    path = source_file(spec)
    if path is None:
        raise ConfigError(f"{KEY}: {spec!r}: {_missing(spec)}")
    return {"factory": spec, "file": str(path), "sha256": sha256_file(path)}


def _missing(spec: str) -> str:
    target, _ = parse(spec)
    return f"no such file {target}" if is_file_spec(spec) else f"no module {target} on the Python path"


def load(spec: str):
    """The build function `spec` names; ConfigError naming it when it cannot be imported or is not callable."""
    target, function = parse(spec)
    path = source_file(spec)
    if path is None:
        raise ConfigError(f"{KEY}: {spec!r}: {_missing(spec)}")
    try:
        module = _import_file(path) if is_file_spec(spec) else importlib.import_module(target)
    except Exception as e:  # noqa: BLE001 - the user's code may raise anything while it is imported
        raise ConfigError(f"{KEY}: cannot import {target}: {type(e).__name__}: {one_line(e)}") from None
    build = getattr(module, function, None)
    if not callable(build):
        what = "not callable" if build is not None else "not defined there"
        raise ConfigError(f"{KEY}: {spec!r}: {function} is {what} in {path}")
    return build


def _import_file(path: Path):
    """A .py file as a module of its own name (registered: dataclasses and pickle inside it work)."""
    name = f"ledsweep_factory_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def build(spec: str, model_config: dict[str, Any], tokenizer):
    """Call the factory; ConfigError unless it returns a transformers.PreTrainedModel."""
    from transformers import PreTrainedModel

    made = load(spec)(model_config, tokenizer)
    if not isinstance(made, PreTrainedModel):
        raise ConfigError(
            f"{KEY}: {spec!r} returned {type(made).__module__}.{type(made).__qualname__}, "
            f"expected a transformers.PreTrainedModel (an encoder-decoder such as BartForConditionalGeneration)"
        )
    return made

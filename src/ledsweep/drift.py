"""The drift check of a finished run: what its meta.json recorded against the present.

Inputs (config hash, data files, checkpoint), code (git commit, uncommitted diff), environment (library
versions, packages, Python, CUDA, device, precision) and layout (world size). Every Difference names its
kind; ledsweep.verify decides what the differences mean for the verdict, with or without a replay.
"""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import factory, provenance
from .config import ConfigError, config_sha256, load_config
from .model import resolve_precision
from .runfolder import RunFolder, sha256_file


class VerifyError(RuntimeError):
    """The run cannot be verified; the message names the path and the reason."""


@dataclass
class Difference:
    """One field that differs between the record and now."""

    field: str  # e.g. config_sha256, data.train_file, versions.torch, step_losses, metrics.rougeL
    recorded: Any
    now: Any
    kind: str  # input | code | environment | layout | result
    severity: str  # differs | within tolerance | info (listed; the replay decides)
    detail: str = ""
    abs_diff: float | None = None
    rel_diff: float | None = None


def open_run(path: str | Path) -> tuple[RunFolder, dict]:
    """The finished run folder at `path` and its meta.json; VerifyError naming the path otherwise."""
    run = RunFolder(path)
    if not run.path.is_dir():
        raise VerifyError(f"{run.path}: no such run folder")
    for need in (run.config, run.meta):
        if not need.is_file():
            raise VerifyError(f"{run.path}: not a run folder (no {need.name})")
    if not run.is_complete():
        raise VerifyError(f"{run.path}: not a finished run (no summary.json); finish or rerun it first")
    return run, read_record(run.meta)


def read_record(path: Path, lines: bool = False) -> Any:
    """A JSON object (or, with `lines`, a list of JSON-lines rows); None when the file is absent.
    VerifyError naming the file when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
        data = [json.loads(ln) for ln in text.splitlines() if ln.strip()] if lines else json.loads(text)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise VerifyError(f"{path}: unreadable ({e})") from None
    if not isinstance(data, list if lines else dict):
        raise VerifyError(f"{path}: expected {'JSON lines' if lines else 'a JSON object'}")
    return data


def _diff_files(diff: str | None) -> dict[str, str]:
    """`git diff` text -> {path: that file's hunks}."""
    blocks = re.split(r"^(?=diff --git )", diff or "", flags=re.M)
    return {b.split("\n", 1)[0].split(" b/", 1)[-1]: b for b in blocks if b.startswith("diff --git ")}


def _requirements(text: str) -> dict[str, str]:
    pins = (line.strip().partition("==") for line in text.splitlines() if "==" in line)
    return {_norm(name): version for name, _, version in pins}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _differs(name: str, recorded: Any, now: Any, kind: str, detail: str = "") -> list[Difference]:
    """[] when the record and the present agree, else the one Difference (severity `differs`)."""
    return [] if recorded == now else [Difference(name, recorded, now, kind, "differs", detail)]


def check_drift(run: RunFolder, meta: dict) -> tuple[list[Difference], list[str]]:
    """Compare the record with the present. Returns (differences, what was checked)."""
    diffs: list[Difference] = []
    checked: list[str] = []
    for part in (_input_drift, _code_drift, _environment_drift, _layout_drift):
        found, what = part(run, meta)
        diffs += found
        checked.append(what)
    return diffs, checked


def _input_drift(run: RunFolder, meta: dict) -> tuple[list[Difference], str]:
    """What the run computed from: its config, data files and checkpoint."""
    try:
        config_now = config_sha256(load_config(run.config))
    except ConfigError as e:
        raise VerifyError(f"{run.config}: {e}") from None
    diffs = _differs(
        "config_sha256",
        meta.get("config_sha256"),
        config_now,
        "input",
        "config.yaml no longer hashes to what the run recorded",
    )
    data_files = meta.get("data_files") or {}
    for split, path in data_files.items():
        now = sha256_file(path) if Path(path).is_file() else "missing"
        where = path if Path(path).is_absolute() else f"{path} (relative to {os.getcwd()})"
        diffs += _differs(f"data.{split}_file", (meta.get("data_sha256") or {}).get(path), now, "input", where)
    weights = run.checkpoint / "model.safetensors"
    diffs += _differs(
        "checkpoint_sha256",
        meta.get("weights_sha256"),
        sha256_file(weights) if weights.is_file() else "missing",
        "input",
        f"{weights} is not the one the run saved (meta.json weights_sha256)",
    )
    return diffs, f"config hash, {len(data_files)} data files, checkpoint hash"


def _code_drift(run: RunFolder, meta: dict) -> tuple[list[Difference], str]:
    """The ledsweep checkout that would run now."""
    git = provenance.git_state()
    diffs = _differs("git_commit", meta.get("git_commit"), git["commit"], "code")
    diffs += _differs("git_dirty", meta.get("git_dirty"), git["dirty"], "code")
    recorded_diff = (run.path / "git.diff").read_text() if (run.path / "git.diff").is_file() else None
    if (recorded_diff or None) != (git["diff"] or None):
        was, now = _diff_files(recorded_diff), _diff_files(git["diff"])
        changed = sorted(p for p in {*was, *now} if was.get(p) != now.get(p))
        diffs.append(
            Difference(
                "git_diff",
                f"{len(was)} files",
                f"{len(now)} files",
                "code",
                "differs",
                "uncommitted changes differ in: " + ", ".join(changed),
            )
        )
    code = meta.get("model_code")
    if code:  # model.factory: the user's model code, outside the checkout
        now = factory.source_file(code["factory"])
        diffs += _differs(
            "model_code",
            code["sha256"],
            sha256_file(now) if now else "missing",
            "code",
            f"model.factory {code['factory']}: {now or code['file']} is not the code the run was trained with",
        )
    return diffs, "git commit and uncommitted diff" + (", model code (model.factory)" if code else "")


def _environment_drift(run: RunFolder, meta: dict) -> tuple[list[Difference], str]:
    """Libraries, interpreter, device and precision."""
    versions = meta.get("versions") or {}
    diffs = []
    for name, version in provenance.package_versions(tuple(versions)).items():
        diffs += _differs(f"versions.{name}", versions[name], version, "environment")
    packages, n_packages = _package_drift(run, versions)
    diffs += packages
    diffs += _differs("python", meta.get("python"), platform.python_version(), "environment")
    device = provenance.device_info()
    if meta.get("cuda") or device["device_type"] == "cuda":
        import torch

        cuda = torch.version.cuda if device["device_type"] == "cuda" else None
        diffs += _differs("cuda", meta.get("cuda"), cuda, "environment")
    diffs += _differs("device_type", meta.get("device_type"), device["device_type"], "environment")
    diffs += _differs("gpu_name", meta.get("gpu_name"), device["gpu_name"], "environment")
    if "precision" in meta:
        diffs += _differs("precision", meta["precision"], _precision_now(run), "environment")
    what = f"{len(versions)} library versions, {n_packages} packages (requirements.txt)"
    return diffs, what + ", python, cuda, device, precision"


def _package_drift(run: RunFolder, versions: dict) -> tuple[list[Difference], int]:
    """Every other installed package against the run's requirements.txt: (differences, packages recorded)."""
    recorded = run.path / "requirements.txt"
    if not recorded.is_file():
        return [], 0
    was = _requirements(recorded.read_text())
    now = _requirements("\n".join(provenance.installed_packages()))
    seen = {_norm(n) for n in versions}  # already compared as versions.<name>
    diffs = []
    for name in sorted({*was, *now} - seen):
        diffs += _differs(f"package.{name}", was.get(name, "absent"), now.get(name, "absent"), "environment")
    return diffs, len(was)


def _precision_now(run: RunFolder) -> str:
    """The precision the run's config resolves to on this machine (auto: bf16 where supported)."""
    try:
        return resolve_precision(load_config(run.config).training.precision)
    except ConfigError as e:
        return f"unavailable ({e})"


def _layout_drift(run: RunFolder, meta: dict) -> tuple[list[Difference], str]:
    """How many processes trained the run: a replay is one process."""
    world = meta.get("world_size") or 1
    if world == 1:
        return [], "world size"
    # a replay is one process: the same global batch, another summation order
    detail = (
        f"trained by {world} processes; replayed in one with gradient_accumulation_steps x {world} "
        "(the same global batch), so at best within tolerance"
    )
    return [Difference("world_size", world, 1, "layout", "within tolerance", detail)], "world size"

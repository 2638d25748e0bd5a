"""Audit a finished run: has anything drifted since it was made, and does it still reproduce?

    python scripts/verify_run.py results/<run>               # drift check + replay of the first 20 steps
    python scripts/verify_run.py results/<run> --steps 0     # drift check only (seconds, no training)
    python scripts/verify_run.py results/<run> --full        # replay the whole run: every metric + weights
    python scripts/verify_run.py results/<run> --json        # the same, as one JSON object

1. Drift check (always): compares what meta.json recorded with the present: config hash (recomputed from
   config.yaml), data file hashes, the checkpoint's hash, git commit + uncommitted diff, library versions
   (meta.json and requirements.txt), Python, CUDA, device and precision.
2. Quick replay (`--steps K`): the first K optimizer steps, trained by the real training code from
   config.yaml *unchanged* in a temp folder, then stopped (see `_stop_after_step`); their per-step losses
   are compared with step_losses.jsonl. Shortening training.max_steps instead would change the learning
   rate of every step after the first under a decaying schedule (and any fractional warm-up).
3. Full replay (`--full`): the whole run (as `train_baseline.py --config <run>/config.yaml --output-dir
   <tmp>`); compares every step loss, every metric and the sha256 of the weights.

Verdict (exit code): `identical` (0), `within tolerance` (1), `differs` (2); 3 = cannot verify (not a
finished run folder, unreadable files, the replay crashed). Rules:
  * input drift (config hash, a data file, the checkpoint's hash vs meta.json) -> differs;
  * environment drift (library versions, Python, CUDA, device, precision) and code drift (git commit,
    uncommitted diff) -> differs without a replay; with a replay they are listed and the replayed
    numbers decide; environment drift puts the tolerances in effect;
  * a run trained by several processes (meta.json world_size > 1) is replayed in one process with the
    same global batch (gradient_accumulation_steps x world size): the world size is listed as a
    difference `within tolerance` (never `identical`) and puts the tolerances in effect;
  * a replayed loss/metric: bitwise equal -> identical; else |now - recorded| <= atol + rtol*|recorded|
    with tolerances in effect (or --tolerate) -> within tolerance; else differs. Different weights with
    tolerances in effect -> within tolerance (the metrics then decide).
Nothing in the run folder is written; the replay lives in a temp folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, dump_yaml, get_dotted, load_config, load_yaml, set_dotted
from .drift import Difference, VerifyError, check_drift, open_run, read_record
from .runfolder import RunFolder, atomic_write_text, read_jsonl

VERDICTS = ("identical", "within tolerance", "differs")
EXIT_CANNOT_VERIFY = 3
DEFAULT_STEPS = 20


@dataclass
class Tolerance:
    rtol: float = 1e-6
    atol: float = 0.0
    always: bool = False  # also when device and library versions match (e.g. non-deterministic GPU kernels)


@dataclass
class Report:
    run: str
    mode: str  # drift | quick | full
    verdict: str = "identical"
    differences: list[Difference] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    recorded: dict = field(default_factory=dict)
    tolerance: dict = field(default_factory=dict)
    replay: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return VERDICTS.index(self.verdict)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "exit_code": self.exit_code}, indent=2, default=str)

    def format(self) -> str:
        """The human-readable report."""
        modes = {
            "drift": "drift check",
            "quick": f"drift check + quick replay ({self.replay.get('steps')} steps)",
            "full": "drift check + full replay",
        }
        r = self.recorded
        lines = [
            f"verify {self.run}: {modes[self.mode]}",
            f"  recorded   {r.get('start_time')} on {r.get('hostname')} ({r.get('device')}), "
            f"git {str(r.get('git_commit'))[:12]}{' (dirty)' if r.get('git_dirty') else ''}, "
            f"torch {r.get('torch')}",
        ]
        if self.replay.get("overrides"):
            lines.append(f"  overrides  {', '.join(self.replay['overrides'])} (debugging: not the recorded config)")
        lines.append("  checked    " + "\n             ".join(self.checked))
        if self.differences:
            lines.append("  differences (field: recorded -> now)")
            width = max(len(d.field) for d in self.differences)
            for d in self.differences:
                tail = f"  [{d.kind}, {d.severity}]" + (f"  {d.detail}" if d.detail else "")
                lines.append(f"    {d.field:<{width}}  {_short(d.recorded)} -> {_short(d.now)}{tail}")
        else:
            lines.append("  differences none")
        t = self.tolerance
        if self.mode != "drift":
            why = (
                "not needed: same device and library versions"
                if not t.get("in_effect")
                else "in effect: --tolerate"
                if t.get("always")
                else "in effect: device, library versions or world size differ"
            )
            lines.append(f"  tolerance  rtol {t.get('rtol'):g}, atol {t.get('atol'):g} ({why})")
        lines.append("  time       " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        named = [d.field for d in self.differences if d.severity == self.verdict]
        lines.append(f"verdict: {self.verdict}" + (f" ({', '.join(named)})" if named else ""))
        return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{40,64}", value):
        return value[:12]
    if isinstance(value, float):
        return f"{value:.9g}"
    return str(value)


# ----------------------------------------------------------------------------- replay
def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['seed=2', 'training.learning_rate=2.0e-3'] -> {dotted key: YAML-parsed value}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise VerifyError(f"--replay-override {item!r}: expected KEY=VALUE, e.g. seed=2")
        out[key] = yaml.safe_load(value)
    return out


def replay(run: RunFolder, meta: dict, workdir: Path, stop_after: int | None, overrides: dict) -> RunFolder:
    """Train the run's config again into `workdir` in a fresh process (stopped after `stop_after` steps)."""
    config = run.config
    if overrides:
        data = load_yaml(run.config)
        for key, value in overrides.items():
            set_dotted(data, key, value)
        config = workdir / "replay-config.yaml"
        config.write_text(dump_yaml(data))
    world = meta.get("world_size") or 1
    if world > 1:  # one process, the same global batch: accumulation x world size
        data = load_yaml(config)
        steps = get_dotted(data, "training.gradient_accumulation_steps", None) or 1
        set_dotted(data, "training.gradient_accumulation_steps", steps * world)
        config = workdir / "replay-config.yaml"
        config.write_text(dump_yaml(data))
    try:
        run_name = load_config(config).run_name
    except ConfigError as e:
        raise VerifyError(f"--replay-override: {e}") from None
    args = ["--config", str(config), "--output-dir", str(workdir)]
    args += ["--threads", str(meta["num_threads"])] if meta.get("num_threads") else []
    # same config, so the same schedule, warm-up, data order and cadence; the trainer checkpoints and
    # stops itself after step K (exit 143), which flushes the step losses
    args += ["--stage", "train", "--stop-after-step", str(stop_after)] if stop_after else []
    src = str(Path(__file__).resolve().parents[1])  # this checkout's ledsweep, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    env.pop("LEDSWEEP_FAULT", None)
    log_path = workdir / "replay.log"
    code = "import sys; from ledsweep.cli import train_main; sys.exit(train_main(sys.argv[1:]))"
    with open(log_path, "w") as log:
        rc = subprocess.run(
            [sys.executable, "-c", code, *args], env=env, stdout=log, stderr=subprocess.STDOUT
        ).returncode
    if rc not in ((0, 143) if stop_after else (0,)):
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise VerifyError(f"{run.path}: the replay failed (exit {rc}); last lines of its log:\n{tail}")
    return RunFolder(workdir / run_name)


# ----------------------------------------------------------------------------- comparison
def compare_number(name: str, recorded: Any, now: Any, tol: Tolerance, in_effect: bool) -> Difference | None:
    """None when bitwise equal; else a Difference whose severity is `within tolerance` or `differs`."""
    if recorded == now or (_isnan(recorded) and _isnan(now)):
        return None
    if not all(isinstance(v, (int, float)) for v in (recorded, now)):
        return Difference(name, recorded, now, "result", "differs")
    abs_diff = abs(now - recorded)
    rel_diff = abs_diff / abs(recorded) if recorded else math.inf
    ok = in_effect and abs_diff <= tol.atol + tol.rtol * abs(recorded)
    detail = f"abs {abs_diff:.2g}, rel {rel_diff:.2g}"
    return Difference(
        name, recorded, now, "result", "within tolerance" if ok else "differs", detail, abs_diff, rel_diff
    )


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def compare_step_losses(
    recorded: list[dict], replayed: list[dict], steps: int, tol: Tolerance, in_effect: bool
) -> Difference | None:
    """The first `steps` per-step losses, as one Difference (first differing step, largest deviation)."""
    was = {r["step"]: r["loss"] for r in recorded}
    now = {r["step"]: r["loss"] for r in replayed}
    found = [
        d for s in range(1, steps + 1) if (d := compare_number(f"step {s}", was.get(s), now.get(s), tol, in_effect))
    ]
    if not found:
        return None
    first, worst = found[0], max(found, key=lambda d: d.rel_diff if d.rel_diff is not None else math.inf)
    severity = "within tolerance" if all(d.severity == "within tolerance" for d in found) else "differs"
    detail = f"{len(found)} of {steps} steps differ, first at {first.field} (shown)" + (
        f"; max rel {worst.rel_diff:.2g} at {worst.field}" if worst.rel_diff is not None else ""
    )
    return Difference(
        "step_losses", first.recorded, first.now, "result", severity, detail, worst.abs_diff, worst.rel_diff
    )


def compare_metrics(recorded: dict, now: dict, tol: Tolerance, in_effect: bool) -> list[Difference]:
    names = list(recorded) + [k for k in now if k not in recorded]
    found = (compare_number(f"metrics.{k}", recorded.get(k), now.get(k), tol, in_effect) for k in names)
    return [d for d in found if d]


def decide(differences: list[Difference]) -> str:
    """The worst severity among the differences ('info' does not count)."""
    return max((d.severity for d in differences if d.severity in VERDICTS), key=VERDICTS.index, default="identical")


# ----------------------------------------------------------------------------- main entry
def verify_run(
    path: str | Path,
    steps: int = DEFAULT_STEPS,
    full: bool = False,
    tolerance: Tolerance | None = None,
    overrides: dict | None = None,
    keep: bool = False,
) -> Report:
    """Drift check, then a quick (`steps` > 0) or full replay. Raises VerifyError if it cannot verify."""
    tol = tolerance or Tolerance()
    t0 = time.perf_counter()
    run, meta = open_run(path)
    halted = meta.get("halving") or {}
    if full and halted.get("status") == "stopped":
        raise VerifyError(
            f"{run.path}: successive halving stopped this run at step {halted['step']} (rung {halted['rung']}); "
            f"a full replay would train to training.max_steps: use --steps K (K <= {halted['step']})"
        )
    recorded_losses = read_record(run.step_losses, lines=True) or []
    mode = "full" if full else "quick" if steps > 0 else "drift"
    if mode == "quick":
        if not recorded_losses:
            raise VerifyError(
                f"{run.step_losses}: missing or empty (a run recorded before per-step losses were "
                "kept); use --full or --steps 0"
            )
        steps = min(steps, len(recorded_losses))
    recorded = {k: meta.get(k) for k in ("start_time", "hostname", "device", "git_commit", "git_dirty")}
    report = Report(str(run.path), mode, recorded={**recorded, "torch": (meta.get("versions") or {}).get("torch")})
    report.differences, report.checked = check_drift(run, meta)
    report.seconds["drift check"] = round(time.perf_counter() - t0, 3)
    in_effect = tol.always or any(d.kind in ("environment", "layout") for d in report.differences)
    report.tolerance = {"rtol": tol.rtol, "atol": tol.atol, "always": tol.always, "in_effect": in_effect}
    if mode == "drift":
        report.verdict = decide(report.differences)
        return report

    for d in report.differences:  # the replay is the evidence now
        if d.kind in ("code", "environment"):
            d.severity = "info"
    t1 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="ledsweep-verify-"))
    report.replay = {
        "steps": steps if mode == "quick" else len(recorded_losses) or None,
        "overrides": [f"{k}={v}" for k, v in (overrides or {}).items()],
        "dir": str(workdir) if keep else None,
    }
    try:
        print(
            f"verify: replaying {run.path} in {workdir} ({'full run' if full else f'{steps} steps'}, "
            f"log: {workdir / 'replay.log'})",
            file=sys.stderr,
        )
        again = replay(run, meta, workdir, None if full else steps, overrides or {})
        replayed = read_jsonl(again.step_losses) or read_jsonl(again.step_losses_partial)
        n = len(recorded_losses) if full else steps
        found = compare_step_losses(recorded_losses, replayed, n, tol, in_effect) if n else None
        report.differences += [found] if found else []
        if n:
            report.checked.append(f"{n} step losses ({'within tolerance' if in_effect else 'bitwise'})")
        if full:
            metrics = (read_record(run.summary) or {}).get("metrics") or {}
            report.differences += compare_metrics(
                metrics, json.loads(again.summary.read_text())["metrics"], tol, in_effect
            )
            new_weights = json.loads(again.meta.read_text()).get("weights_sha256")
            if new_weights != meta.get("weights_sha256"):
                report.differences.append(
                    Difference(
                        "weights_sha256",
                        meta.get("weights_sha256"),
                        new_weights,
                        "result",
                        "within tolerance" if in_effect else "differs",
                        "the replay trained different weights",
                    )
                )
            report.checked.append(f"{len(metrics)} metrics, weights sha256")
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report.seconds["full replay" if full else "quick replay"] = round(time.perf_counter() - t1, 3)
    report.verdict = decide(report.differences)
    return report


def main(argv: list[str] | None = None, prog: str = "verify_run.py") -> int:
    """`verify_run.py RUN_DIR [--steps K | --full] [--json]`: exit 0 identical, 1 within tolerance, 2 differs,
    3 cannot verify."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 identical, 1 within tolerance, 2 differs, 3 cannot verify",
    )
    p.add_argument("run", help="a finished run folder, e.g. results/led_baseline_run_001")
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help="quick replay: retrain the first K steps and compare their losses (default %(default)s, "
        "capped by the run's steps; 0 = drift check only)",
    )
    p.add_argument("--full", action="store_true", help="replay the whole run: compare every metric and the weights")
    p.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance for losses and metrics (%(default)g)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance for losses and metrics (%(default)g)")
    p.add_argument(
        "--tolerate",
        action="store_true",
        help="apply the tolerances even when device and library versions match (by default they "
        "apply only when those differ; a same-environment replay must then be bitwise equal)",
    )
    p.add_argument(
        "--replay-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="debugging: change the replayed config (e.g. seed=2) to see what a change does",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    p.add_argument("--keep", action="store_true", help="keep the replay's temp folder (its path is reported)")
    args = p.parse_args(argv)
    if args.steps < 0:
        p.error("--steps: expected 0 or more")
    try:
        report = verify_run(
            args.run,
            args.steps,
            args.full,
            Tolerance(args.rtol, args.atol, args.tolerate),
            parse_overrides(args.replay_override),
            args.keep,
        )
    except VerifyError as e:
        if args.json:
            print(json.dumps({"run": args.run, "verdict": "error", "error": str(e), "exit_code": EXIT_CANNOT_VERIFY}))
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CANNOT_VERIFY
    print(report.to_json() if args.json else report.format())
    return report.exit_code


TABLE_COLUMNS = ["run_name", "verdict", "exit_code", "differs", "drift", "steps", "seconds", "details"]


def verify_sweep(run_dirs: list[str], steps: int, out: str) -> dict[str, int]:
    """rule verify: each run's report (to stderr: the rule's log) and one row per run in the CSV `out`;
    a run that cannot be verified is a row with verdict `error`. Returns the count of each verdict."""
    rows = []
    for run_dir in map(Path, run_dirs):
        try:
            report = verify_run(run_dir, steps=steps)
        except VerifyError as e:
            print(f"error: {e}", file=sys.stderr)
            rows.append(
                {"run_name": run_dir.name, "verdict": "error", "exit_code": EXIT_CANNOT_VERIFY, "details": str(e)}
            )
            continue
        print(report.format() + "\n", file=sys.stderr)
        rows.append(
            {
                "run_name": run_dir.name,
                "verdict": report.verdict,
                "exit_code": report.exit_code,
                "differs": ";".join(d.field for d in report.differences if d.severity != "info"),
                "drift": ";".join(d.field for d in report.differences if d.severity == "info"),
                "steps": report.replay.get("steps"),
                "seconds": round(sum(report.seconds.values()), 1),
                "details": "; ".join(f"{d.field}: {d.recorded} -> {d.now}" for d in report.differences),
            }
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out, buf.getvalue())
    counts = {v: sum(r["verdict"] == v for r in rows) for v in dict.fromkeys(r["verdict"] for r in rows)}
    print(f"{out}: " + ", ".join(f"{n} {v}" for v, n in counts.items()), file=sys.stderr)
    return counts

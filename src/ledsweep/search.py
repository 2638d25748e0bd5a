"""Search beyond the grid, with Snakemake as the only driver: every decision is a file.

    sample:                       # quasi-random (Sobol) or random points, instead of or beside the grid
      method: sobol               # sobol | random
      n: 16
      seed: 0
      space:
        training.learning_rate: {loguniform: [1.0e-4, 3.0e-3]}
        training.warmup_steps: {int: [0, 200]}
        model.dropout: {uniform: [0.0, 0.2]}
        generation.num_beams: {choice: [1, 2, 4]}
    halving:                      # successive halving
      rungs: [200, 600, 1200]     # training steps at each rung; the last is the full budget
      keep: 0.34                  # share of runs that go on to the next rung
      metric: rougeL              # measured on the validation split

`sample_points(spec)` gives the same points for the same seed (Sobol: scipy.stats.qmc, scrambled, the first
`n` points of the next power of two; random: numpy's PCG64), so run `<sweep>_s07` is the same config on
every machine and stays the same when `n` grows. `decide(...)` is the rule of a rung: rank by the metric
(ties broken by run name), keep `max(1, floor(keep * entered))`. No torch: the Snakefile imports this.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .config import ConfigError
from .runfolder import atomic_write_text
from .schema import is_number

METHODS = ("sobol", "random")
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
SIGNIFICANT_DIGITS = 4  # sampled floats are rounded to this many: readable configs and tables


class SearchError(ConfigError):
    """An invalid `sample:` or `halving:` section; the message names the sweep and key."""


@dataclass(frozen=True)
class Halving:
    rungs: tuple[int, ...]  # training steps at each rung, increasing; the last is training.max_steps
    keep: float
    metric: str

    def kept(self, entered: int) -> int:
        """How many of `entered` runs go on to the next rung."""
        return max(1, math.floor(self.keep * entered + 1e-9))


# ----------------------------------------------------------------------------- sampling
def check_sample(sweep: str, spec: Any) -> tuple[str, int, int, dict[str, tuple[str, Any]]]:
    """(method, n, seed, {dotted key: (distribution, argument)}) or SearchError naming the key."""
    where = f"sweep '{sweep}': sample"
    if not isinstance(spec, dict):
        raise SearchError(f"{where}: expected a mapping with method, n, seed and space")
    unknown = set(spec) - {"method", "n", "seed", "space"}
    if unknown:
        raise SearchError(f"{where}: unknown keys {sorted(unknown)}; allowed: method, n, seed, space")
    method = spec.get("method", "sobol")
    if method not in METHODS:
        raise SearchError(f"{where}.method: expected one of {list(METHODS)}, got {method!r}")
    n, seed = spec.get("n"), spec.get("seed", 0)
    if not _is_int(n) or n < 1:
        raise SearchError(f"{where}.n: expected a whole number of points >= 1, got {n!r}")
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise SearchError(f"{where}.seed: expected a whole number in [0, 2**32), got {seed!r}")
    space = spec.get("space")
    if not isinstance(space, dict) or not space:
        raise SearchError(f"{where}.space: expected a mapping of dotted config keys to distributions")
    return method, n, seed, {key: _check_dimension(f"{where}.space.{key}", value) for key, value in space.items()}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_dimension(where: str, value: Any) -> tuple[str, Any]:
    expected = "one of {loguniform: [low, high]}, {uniform: [low, high]}, {int: [low, high]}, {choice: [a, b, ...]}"
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        raise SearchError(f"{where}: expected {expected}, got {value!r}")
    kind, arg = next(iter(value.items()))
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise SearchError(f"{where}.choice: expected a non-empty list of values, got {arg!r}")
        return kind, list(arg)
    if (
        not isinstance(arg, list)
        or len(arg) != 2
        or not all(is_number(x) and math.isfinite(x) for x in arg)
        or not arg[0] < arg[1]
    ):
        raise SearchError(f"{where}.{kind}: expected [low, high] with low < high, got {arg!r}")
    if kind == "int" and not all(map(_is_int, arg)):
        whole = all(float(x).is_integer() for x in arg)  # [1.0, 4.0]: YAML floats, whole numbers all the same
        hint = f" (write {[int(x) for x in arg]})" if whole else ""
        raise SearchError(f"{where}.int: expected integer bounds, got {arg!r}{hint}")
    if kind == "loguniform" and arg[0] <= 0:
        raise SearchError(f"{where}.loguniform: bounds must be > 0, got {arg!r}")
    return kind, list(arg)


def unit_points(method: str, n: int, seed: int, dims: int) -> list[list[float]]:
    """`n` points in [0, 1)^dims: scrambled Sobol (the first n of 2**ceil(log2 n)) or uniform random."""
    if method == "sobol":
        m = max(0, math.ceil(math.log2(n)))
        return _sobol(dims, m, seed)[:n]
    import numpy as np

    return np.random.default_rng(seed).random((n, dims)).tolist()


def _sobol(dims: int, m: int, seed: int) -> list[list[float]]:
    """scipy's scrambled Sobol draw, kept in a per-user cache file: importing scipy.stats costs over a
    second, and every Slurm job parses the workflow again (the cache is named by scipy's version)."""
    import os
    from importlib.metadata import version
    from pathlib import Path

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "ledsweep", "sobol")
    path = cache / f"scipy{version('scipy')}-d{dims}-m{m}-seed{seed}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    from scipy.stats import qmc

    points = qmc.Sobol(d=dims, scramble=True, rng=seed).random_base2(m).tolist()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(points))
    except OSError:  # a read-only home: draw again next time
        pass
    return points


def _round(x: float) -> float:
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def scale(kind: str, arg: list, u: float) -> Any:
    """The value of one dimension at unit coordinate u in [0, 1)."""
    if kind == "choice":
        return arg[min(int(u * len(arg)), len(arg) - 1)]
    low, high = arg
    if kind == "int":
        return min(low + int(u * (high - low + 1)), high)
    if kind == "loguniform":
        return _round(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
    return _round(low + u * (high - low))


def sample_points(method: str, n: int, seed: int, space: dict[str, tuple[str, Any]]) -> list[dict[str, Any]]:
    """The sampled points: {dotted key: value}, keys sorted, in draw order (point i is run `_s<i>`)."""
    keys = sorted(space)
    return [{k: scale(*space[k], u) for k, u in zip(keys, row)} for row in unit_points(method, n, seed, len(keys))]


def point_suffix(i: int) -> str:
    """`s03` for point 3: the run-name part of a sampled point. Two digits at least, never more for a larger
    `n` (point 5 is `s05` of 16 points and of 5,000), so growing `sample.n` keeps every earlier run's name."""
    return f"s{i:02d}"


# ----------------------------------------------------------------------------- successive halving
def check_halving(sweep: str, spec: Any, metrics: tuple[str, ...]) -> Halving:
    where = f"sweep '{sweep}': halving"
    if not isinstance(spec, dict):
        raise SearchError(f"{where}: expected a mapping with rungs, keep and metric")
    unknown = set(spec) - {"rungs", "keep", "metric"}
    if unknown:
        raise SearchError(f"{where}: unknown keys {sorted(unknown)}; allowed: rungs, keep, metric")
    rungs = spec.get("rungs")
    if (
        not isinstance(rungs, list)
        or len(rungs) < 2
        or not all(_is_int(r) and r > 0 for r in rungs)
        or any(a >= b for a, b in zip(rungs, rungs[1:]))
    ):
        raise SearchError(
            f"{where}.rungs: expected at least two increasing whole numbers of training steps "
            f"(the last is the full budget), got {rungs!r}"
        )
    keep = spec.get("keep", 0.5)
    if not is_number(keep) or not 0 < keep < 1:  # NaN and inf fail the range
        raise SearchError(f"{where}.keep: expected the share of runs that go on, in (0, 1), got {keep!r}")
    metric = spec.get("metric", "rougeL")
    if metric not in metrics:
        raise SearchError(f"{where}.metric: expected one of {list(metrics)}, got {metric!r}")
    return Halving(tuple(rungs), float(keep), metric)


def decide(
    scores: dict[str, float | None], halving: Halving, higher_is_better: bool
) -> tuple[list[str], list[str], list[str]]:
    """(ranking, kept, stopped) of the runs that entered a rung. Best first; a missing or non-finite score
    ranks last; ties are broken by run name."""

    def order(name: str) -> tuple:
        v = scores[name]
        ok = isinstance(v, (int, float)) and math.isfinite(v)
        return (not ok, (-v if higher_is_better else v) if ok else 0.0, name)

    ranking = sorted(scores, key=order)
    k = halving.kept(len(ranking))
    return ranking, sorted(ranking[:k]), sorted(ranking[k:])


def read_decision(path) -> dict:
    """A decision file (results/sweeps/<sweep>/halving/rung<k>.json)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)

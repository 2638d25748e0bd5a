"""Expand named sweeps (base config x grid [x zip] [x sample]) into runs with short, deterministic names.

    sweeps:
      demo:
        base: config/led_baseline.yaml
        grid: {training.learning_rate: [3.0e-4, 1.0e-3], seed: [1, 2]}
        zip: {model.d_model: [64, 128], model.ffn_dim: [256, 512]}   # optional: vary together
        set: {training.max_steps: 400}                                # optional: fixed overrides
        sample: {method: sobol, n: 16, seed: 0, space: {...}}         # optional: see ledsweep.search
        halving: {rungs: [200, 600, 1200], keep: 0.34, metric: rougeL}   # optional: ledsweep.search

Each point becomes run `<sweep>_<slug>`, e.g. `demo_lr0.0003_seed1`: keys sorted, so the name does
not depend on the order in the file. A sampled point adds `_s<i>` (its place in the draw): `lr_search_s07`.
Cheap to import and fast: the Snakefile calls it at parse time.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from . import metrics_registry, search
from .config import (
    DECODING_SECTIONS,
    IDENTITY_KEYS,
    ConfigError,
    DataConfig,
    EvaluationConfig,
    GenerationConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
    check_semantics,
    from_dict,
    leaf_types,
    load_yaml,
    resolve_value,
    run_config_text,
    run_schema,
    schema_leaf_paths,
    set_dotted,
)
from .runfolder import atomic_write_text
from .schema import check_run_name, check_value, schema_error_message

SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
# short names for common keys in run names; other keys use their last component
ALIASES = {
    "training.learning_rate": "lr",
    "training.per_device_train_batch_size": "bs",
    "training.gradient_accumulation_steps": "ga",
    "training.max_steps": "steps",
    "training.num_train_epochs": "ep",
    "training.lr_scheduler_type": "sched",
    "training.warmup_steps": "warmup",
    "training.weight_decay": "wd",
    "model.d_model": "dm",
    "generation.num_beams": "beams",
}


class SweepError(ConfigError):
    """An invalid sweep definition; the message names the sweep and key."""


@dataclass
class Run:
    sweep: str
    name: str
    overrides: dict[str, Any]  # swept dotted key -> value, keys sorted
    config: dict  # fully resolved run config


@dataclass
class Sweep:
    name: str
    keys: list[str]  # swept dotted keys, sorted
    primary_metric: str = "rougeL"
    runs: dict[str, Run] = field(default_factory=dict)
    halving: search.Halving | None = None  # successive halving (the workflow's rungs), or a plain sweep
    sampled: int = 0  # points drawn by `sample:` (0: a grid alone)
    space: dict[str, tuple[str, Any]] = field(default_factory=dict)  # sampled key -> (distribution, argument)


def format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        text = f"{value:.4g}".replace("e+", "e")  # 1e+20 -> 1e20: '+' is not allowed in run names
    elif isinstance(value, str) and "/" in value:  # a path or hub id: its last part (data/train_b.jsonl -> train_b)
        text = re.sub(r"\.(jsonl|json|csv|parquet|ya?ml)$", "", PurePosixPath(value).name)
    else:
        text = str(value)
    text = re.sub(r"[^A-Za-z0-9.-]+", "-", text)  # only run-name characters ([A-Za-z0-9._-], '_' separates)
    return re.sub(r"\.{2,}", ".", text).strip("-.") or "x"  # never '..'


def _name_order(key: str) -> tuple[bool, str]:
    return key == "seed", key  # seed last: demo_lr0.001_seed1


def run_name(sweep: str, overrides: dict[str, Any]) -> str:
    keys = sorted(overrides, key=_name_order)
    parts = [f"{ALIASES.get(k, k.rsplit('.', 1)[-1])}{format_value(overrides[k])}" for k in keys]
    return "_".join([sweep, *parts])


def _check_key(sweep: str, section: str, key: str, leaves: dict) -> None:
    if key in IDENTITY_KEYS:
        raise SweepError(f"sweep '{sweep}': {section}.{key}: cannot be swept (run names come from the grid)")
    if key not in leaves:
        import difflib

        close = difflib.get_close_matches(key, list(leaves), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SweepError(f"sweep '{sweep}': {section}: unknown config key '{key}'{hint}")


def _check_values(sweep: str, section: str, key: str, values: Any, leaves: dict, validators: dict) -> None:
    if not isinstance(values, list) or not values:
        raise SweepError(f"sweep '{sweep}': {section}.{key}: expected a non-empty list of values, got {values!r}")
    if key not in validators:
        import jsonschema

        validators[key] = jsonschema.Draft202012Validator(leaves[key])
    for v in values:
        errors = list(validators[key].iter_errors(v))
        if errors:
            raise SweepError(f"sweep '{sweep}': {section}.{key}: value {v!r}: {errors[0].message}")
        if problem := check_value(key, v, leaf_types()[key]):  # the run config's own rules
            raise SweepError(f"sweep '{sweep}': {section}.{problem}")


def _copy_tree(data: dict) -> dict:
    """A copy of a resolved config: nested dicts copied, lists deep-copied, scalars shared."""
    return {
        k: _copy_tree(v) if isinstance(v, dict) else copy.deepcopy(v) if isinstance(v, list) else v
        for k, v in data.items()
    }


SPEC_KEYS = ("base", "grid", "zip", "set", "sample", "halving", "primary_metric", "description")


@dataclass
class _Shape:
    """A checked sweep definition: what varies and how."""

    grid: dict
    zipped: dict
    fixed: dict
    metric: str
    samples: list[dict]  # sampled points ({} alone without `sample:`)
    sample_n: int = 0
    halving: search.Halving | None = None
    space: dict = field(default_factory=dict)  # sample.space: key -> (distribution, argument)


def _check_spec(name: str, spec: Any) -> _Shape:
    """The sweep's shape and every swept (or sampled) value, or SweepError."""
    _check_outline(name, spec)
    leaves, validators = schema_leaf_paths(run_schema()), {}
    grid, zipped, fixed = spec.get("grid", {}), spec.get("zip") or {}, spec.get("set") or {}
    for section, mapping in (("grid", grid), ("zip", zipped), ("set", fixed)):
        if not isinstance(mapping, dict) or (section == "grid" and "grid" in spec and not mapping):
            raise SweepError(f"sweep '{name}': {section}: expected a mapping of dotted config keys")
        for key, values in mapping.items():
            _check_key(name, section, key, leaves)
            _check_values(name, section, key, [values] if section == "set" else values, leaves, validators)
    try:
        samples, n, space = _check_sample(name, spec, leaves, validators)
        metric = spec.get("primary_metric", "rougeL")
        if metric not in metrics_registry.names():
            raise SweepError(
                f"sweep '{name}': primary_metric: expected one of {metrics_registry.names()}, got {metric!r}"
            )
        halving = search.check_halving(name, spec["halving"], metrics_registry.names()) if "halving" in spec else None
    except search.SearchError as e:
        raise SweepError(str(e)) from None
    sections = {"grid": set(grid), "zip": set(zipped), "set": set(fixed), "sample.space": set(space)}
    overlap = {k for a, b in itertools.combinations(sections.values(), 2) for k in a & b}
    if overlap:
        raise SweepError(f"sweep '{name}': keys appear in more than one of grid/zip/set/sample: {sorted(overlap)}")
    if len({len(v) for v in zipped.values()}) > 1:
        raise SweepError(f"sweep '{name}': zip: every list must have the same length")
    if halving is not None:
        fixed = _halving_budget(name, halving, sections, fixed)
    return _Shape(grid, zipped, fixed, metric, samples, n, halving, space)


def _check_outline(name: str, spec: Any) -> None:
    """The sweep's name and top-level keys."""
    if not SWEEP_NAME.match(name):
        raise SweepError(f"sweep '{name}': name must match {SWEEP_NAME.pattern}")
    if not isinstance(spec, dict):
        raise SweepError(f"sweep '{name}': expected a mapping with 'base' and 'grid' (or 'sample')")
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise SweepError(f"sweep '{name}': unknown keys {sorted(unknown)}; allowed: {', '.join(SPEC_KEYS[:-1])}")
    if "base" not in spec or ("grid" not in spec and "sample" not in spec):
        raise SweepError(
            f"sweep '{name}': needs 'base' (a run config file) and 'grid' (key -> list of values) or 'sample'"
        )


def _check_sample(name: str, spec: dict, leaves: dict, validators: dict) -> tuple[list[dict], int, dict]:
    """(sampled points, n, space) of `sample:`; ([{}], 0, {}) without one. SearchError when invalid."""
    if "sample" not in spec:
        return [{}], 0, {}
    method, n, seed, space = search.check_sample(name, spec["sample"])
    for key in space:
        _check_key(name, "sample.space", key, leaves)
    samples = search.sample_points(method, n, seed, space)
    for key in space:  # every sampled value is checked like a grid value
        _check_values(name, "sample.space", key, [p[key] for p in samples], leaves, validators)
    return samples, n, space


def _halving_budget(name: str, halving: search.Halving, sections: dict[str, set], fixed: dict) -> dict:
    """`fixed` with training.max_steps set to the last rung (the full budget), which nothing may sweep."""
    budget = "training.max_steps"
    if any(budget in keys for section, keys in sections.items() if section != "set"):
        raise SweepError(f"sweep '{name}': halving: {budget} cannot be swept (halving.rungs[-1] is the budget)")
    if fixed.get(budget, halving.rungs[-1]) != halving.rungs[-1]:
        raise SweepError(
            f"sweep '{name}': set.{budget} is {fixed[budget]} but halving.rungs ends at {halving.rungs[-1]} "
            f"(the full budget): leave {budget} out of set"
        )
    return {**fixed, budget: halving.rungs[-1]}


def _base_config(name: str, spec: dict, fixed: dict, cache: dict) -> dict:
    """The base run config (read once per file) with the sweep's `set` values applied."""
    if spec["base"] not in cache:
        try:
            cache[spec["base"]] = load_yaml(spec["base"])
        except ConfigError as e:
            raise SweepError(f"sweep '{name}': base: {e}") from None
    base = cache[spec["base"]]
    if not isinstance(base, dict):
        raise SweepError(f"sweep '{name}': base: {spec['base']} is not a mapping of config keys")
    for key, value in fixed.items():
        base = copy.deepcopy(base)
        set_dotted(base, key, value)
    return base


def _points(shape: _Shape, sweep: str):
    """(run name, {dotted key: value}) for every grid combination x zip position x sampled point."""
    grid, zipped = shape.grid, shape.zipped
    grid_keys = sorted(grid)
    zip_points = [dict(zip(zipped, vals)) for vals in zip(*zipped.values())] if zipped else [{}]
    for combo in itertools.product(*(grid[k] for k in grid_keys)):
        for zp in zip_points:
            point = {**dict(zip(grid_keys, combo)), **zp}
            prefix = run_name(sweep, point)
            for i, sampled in enumerate(shape.samples):
                suffix = f"_{search.point_suffix(i)}" if shape.sample_n else ""
                yield prefix + suffix, dict(sorted({**point, **sampled}.items()))


def _check_point_name(sweep: Sweep, rname: str, overrides: dict) -> None:
    if problem := check_run_name(rname):  # every point: later values make other names
        raise SweepError(
            f"sweep '{sweep.name}': {', '.join(overrides)}: the run name {problem}; "
            f"shorten the sweep name or these values"
        )
    if rname in sweep.runs:
        raise SweepError(
            f"sweep '{sweep.name}': two grid points map to the run name '{rname}' "
            f"({sweep.runs[rname].overrides} and {overrides}): a run name keeps only the letters, digits, '.' "
            f"and '-' of each value, where these agree; make the values differ there"
        )


def _resolve_first(name: str, base_file: str, base: dict, overrides: dict, rname: str, results_dir: str) -> dict:
    """The first point, validated in full (schema and semantics): the template of the others."""
    raw = copy.deepcopy(base)
    for k, v in overrides.items():
        set_dotted(raw, k, v)
    raw["run_name"], raw["output_dir"] = rname, results_dir
    try:
        return from_dict(raw, source=f"sweep '{name}' (base {base_file})").to_dict()
    except ConfigError as e:
        raise SweepError(str(e)) from None


def _resolve_from(template: dict, name: str, overrides: dict, rname: str) -> dict:
    """Another point: the template with its overrides (each value was checked against the schema) and the
    cross-key rules (cheap: 10,000 runs expand in well under a second)."""
    resolved = _copy_tree(template)
    for k, v in overrides.items():
        set_dotted(resolved, k, resolve_value(k, copy.deepcopy(v)))
    resolved["run_name"] = rname
    try:
        check_semantics(_as_config(resolved), f"sweep '{name}', run {rname}")
    except ConfigError as e:
        raise SweepError(str(e)) from None
    return resolved


def expand_sweep(name: str, spec: dict, results_dir: str = "results", base_cache: dict | None = None) -> Sweep:
    """One sweep definition -> its runs, every value and every run name validated (SweepError otherwise)."""
    shape = _check_spec(name, spec)
    base = _base_config(name, spec, shape.fixed, base_cache if base_cache is not None else {})
    keys = sorted([*shape.grid, *shape.zipped, *shape.samples[0]])
    sweep = Sweep(name, keys, shape.metric, halving=shape.halving, sampled=shape.sample_n, space=shape.space)
    template = None
    for rname, overrides in _points(shape, name):
        _check_point_name(sweep, rname, overrides)
        if template is None:
            template = _resolve_first(name, spec["base"], base, overrides, rname, results_dir)
            resolved = _copy_tree(template)
            if shape.halving:
                _check_halving_config(name, template, shape.halving)
        else:
            resolved = _resolve_from(template, name, overrides, rname)
        sweep.runs[rname] = Run(name, rname, overrides, resolved)
    return sweep


def _check_halving_config(name: str, config: dict, halving: search.Halving) -> None:
    """Halving ranks runs on the validation split: the data must have one, and the metric a scorer."""
    data = config["data"]
    if halving.metric.startswith("bertscore") and not config["evaluation"].get("bertscore_model"):
        raise SweepError(
            f"sweep '{name}': halving.metric: {halving.metric} needs evaluation.bertscore_model in the base config"
        )
    if not data.get("validation_file") and not data.get("dataset_name"):
        raise SweepError(
            f"sweep '{name}': halving: rungs are measured on the validation split, but the base config has "
            f"no data.validation_file (or data.dataset_name)"
        )


def _as_config(resolved: dict) -> RunConfig:
    sections = {
        "model": ModelConfig,
        "data": DataConfig,
        "training": TrainingConfig,
        "generation": GenerationConfig,
        "evaluation": EvaluationConfig,
    }
    return RunConfig(**{k: sections[k](**v) if k in sections else v for k, v in resolved.items()})


def trainers(sweep: Sweep) -> dict[str, str]:
    """run -> the run that trains for it: the first (by name) of the runs whose configs differ only in
    decoding keys (generation.*, evaluation.*). Every other run of the group shares its trained model.
    In a halving sweep every run trains itself (its rungs are measured with its own decoding)."""
    if sweep.halving:  # each run is measured, and stopped or kept, on its own
        return {name: name for name in sweep.runs}
    first: dict[str, str] = {}
    out = {}
    for name in sorted(sweep.runs):  # the runs share base and `set`: only swept keys can differ
        swept = sweep.runs[name].overrides
        key = repr([(k, swept[k]) for k in sorted(swept) if k.split(".", 1)[0] not in DECODING_SECTIONS])
        out[name] = first.setdefault(key, name)
    return out


def load_sweeps(config: dict, only: list[str] | None = None, results_dir: str = "results") -> dict[str, Sweep]:
    """All (or the named) sweeps of a workflow config; run names must be unique across sweeps."""
    sweeps_spec = config.get("sweeps") or {}
    if not isinstance(sweeps_spec, dict) or not sweeps_spec:
        raise SweepError("sweeps: expected at least one named sweep")
    if only is not None and (not isinstance(only, list) or not only):
        raise SweepError(
            f"run_sweeps: expected a non-empty list of sweep names (leave it out or null to build every sweep), "
            f"got {only!r}"
        )
    names = only if only is not None else list(sweeps_spec)
    missing = [n for n in names if n not in sweeps_spec]
    if missing:
        raise SweepError(
            f"sweeps: no sweep named {', '.join(map(repr, missing))}; defined: {', '.join(map(repr, sweeps_spec))}"
        )
    out, owner, cache = {}, {}, {}
    for name in names:
        sweep = expand_sweep(name, sweeps_spec[name], results_dir, cache)
        for rname in sweep.runs:
            if rname in owner:
                raise SweepError(f"sweep '{name}': run name '{rname}' is also produced by sweep '{owner[rname]}'")
            owner[rname] = name
        out[name] = sweep
    return out


def check_config_files(paths) -> None:
    """Read workflow config files with the strict loader first (tags, duplicate keys, anchors refused)."""
    for path in paths:
        if Path(path).exists():
            try:
                load_yaml(path)
            except ConfigError as e:
                raise SweepError(f"invalid workflow config: {e}") from None


def validate_workflow_config(config: dict, schema_path) -> None:
    """JSON-Schema validation with messages that name the sweep and key (sweeps.<name>.grid.<key>: ...)."""
    import jsonschema

    schema = load_yaml(schema_path)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.path)))
    if errors:
        raise SweepError("invalid workflow config: " + "\n  ".join(schema_error_message(e) for e in errors))


def write_run_config(config: dict, path: str, log: str) -> None:
    """rule run_config (a `run:` block: no Python start per run): resolved config -> config.yaml, atomically."""
    atomic_write_text(path, run_config_text(config, source=path))
    with open(log, "w") as f:
        print(f"wrote {path} (run {config['run_name']})", file=f)


def vanished_inputs(snakemake_log: str) -> list[str]:
    """Snakemake says "Missing files after N seconds. This might be due to filesystem latency" when a job's input
    that existed when the sweep was planned is gone as the job starts (a prepared-data folder removed while
    the sweep ran). One line for each such input: what happened, and what to do."""
    lines = []
    for block in snakemake_log.split("Missing files after")[1:]:
        for line in block.splitlines()[1:]:
            if "(missing locally" not in line:
                break
            path = line.split(" (missing locally")[0].strip()
            what = "prepared data" if "/prepared/" in f"/{path}" else "an input"
            lines.append(
                f"{path}: {what} removed while the sweep ran (not filesystem latency); run snakemake again: "
                f"it is made again, and finished runs are kept"
            )
    return list(dict.fromkeys(lines))

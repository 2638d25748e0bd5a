# ---------------------------------------------------------------- run_config
# The resolved run config. Its only trigger is the config itself (a param): it is
# rewritten, and the run redone, only when the run's config really changes. A `run:`
# block: Snakemake runs it in its own process (no Python start per run).
rule run_config:
    output:
        report(
            "results/{run}/config.yaml",
            caption="../report/run_config.rst",
            category="Runs",
            subcategory="{run}",
            labels={"run": "{run}", "file": "config.yaml"},
        ),
    log:
        "results/{run}/logs/run_config.log",
    localrule: True
    params:
        config=get_run_config,
    run:
        write_run_config(params.config, output[0], log[0])


# ---------------------------------------------------------------- prepare_data
# Data files -> tokenized splits + tokenizer + manifest, once for each distinct data setting
# (files, columns, lengths, sample limits, tokenizer), shared by every run that needs it.
rule prepare_data:
    input:
        files=get_data_files,
        prefetch=get_data_prefetch_markers,
    output:
        directory("results/prepared/{data_key}"),
    log:
        "results/prepared/logs/{data_key}.log",
    benchmark:
        "benchmarks/prepare_data/{data_key}.tsv"
    conda:
        "../../environment.yaml"
    threads: 8
    params:
        spec=get_data_spec,
    script:
        "../scripts/prepare_data.py"


# ---------------------------------------------------------------- train
# Training keys (a param: decoding keys never retrain) + prepared data -> trained/. Only the
# first run of each group that differs in generation.*/evaluation.* alone is trained. Resume
# state lives in trained/resume/, not an output: a failed, timed-out or requeued job resumes.
# Several GPUs or nodes: the resources (gpu, nodes, gres, ddp_procs; profiles/default/config.yaml)
# make the job start torchrun, one process per GPU (ledsweep.worker).
rule train:
    input:
        prepared=get_prepared_data,
        prefetch=get_prefetch_marker,
        decisions=get_halving_decisions,
        model_code=get_model_code,
    output:
        checkpoint=directory("results/{run}/trained/checkpoint"),
        meta="results/{run}/trained/meta.json",
    log:
        "results/{run}/logs/train.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    conda:
        "../../environment.yaml"
    threads: 2
    params:
        config=get_train_config,
    script:
        "../scripts/train.py"


# ---------------------------------------------------------------- link_checkpoint
# Every run's checkpoint/ (hard links to the weights its group trained once, its own
# generation_config.json) and meta.json (naming the run that trained it).
rule link_checkpoint:
    input:
        checkpoint=get_trained_checkpoint,
        meta=get_trained_meta,
    output:
        checkpoint=directory("results/{run}/checkpoint"),
        meta="results/{run}/meta.json",
    log:
        "results/{run}/logs/link_checkpoint.log",
    localrule: True
    params:
        config=get_run_config,
    run:
        link_checkpoint(
            input.checkpoint,
            input.meta,
            output.checkpoint,
            output.meta,
            params.config,
            log[0],
        )


# ---------------------------------------------------------------- evaluate
# checkpoint -> predictions.jsonl + summary.json (written last, atomically).
rule evaluate:
    input:
        config=rules.run_config.output[0],
        prepared=get_prepared_data,
        checkpoint=rules.link_checkpoint.output.checkpoint,
        meta=rules.link_checkpoint.output.meta,
    output:
        summary=report(
            "results/{run}/summary.json",
            caption="../report/summary.rst",
            category="Runs",
            subcategory="{run}",
            labels={"run": "{run}", "file": "summary.json"},
        ),
        predictions="results/{run}/predictions.jsonl",
    log:
        "results/{run}/logs/evaluate.log",
    benchmark:
        "benchmarks/evaluate/{run}.tsv"
    conda:
        "../../environment.yaml"
    threads: 2
    script:
        "../scripts/evaluate.py"

# ---------------------------------------------------------------- train_rung
# Successive halving (sweeps with `halving:`): train a run to one rung's step, resuming from its
# own checkpoint (always on the full budget's schedule), and score the validation split.
rule train_rung:
    input:
        prepared=get_prepared_data,
        prefetch=get_prefetch_marker,
        entered=get_rung_entry,
        model_code=get_model_code,
    output:
        "results/{run}/rungs/{step}.json",
    log:
        "results/{run}/logs/train_rung_{step}.log",
    benchmark:
        "benchmarks/train_rung/{run}_{step}.tsv"
    conda:
        "../../environment.yaml"
    threads: 2
    params:
        config=get_run_config,
        trained=get_trained_dir,
    script:
        "../scripts/train_rung.py"


# ---------------------------------------------------------------- halving_decision
# Rank the runs that entered a rung by the halving metric (ties: run name), keep the best share.
# A checkpoint: the next rung's jobs are known only once this file exists.
checkpoint halving_decision:
    input:
        get_rung_results,
    output:
        "results/sweeps/{sweep}/halving/rung{rung}.json",
    log:
        "results/sweeps/{sweep}/logs/halving_rung{rung}.log",
    localrule: True
    conda:
        "../../environment.yaml"
    params:
        halving=get_halving,
    script:
        "../scripts/halving_decision.py"

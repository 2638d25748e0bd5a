# ---------------------------------------------------------------- prefetch
# Compute nodes are often offline: download every hub model, tokenizer, dataset,
# BERTScore model and `evaluate` metric (evaluation.extra_metrics) a sweep names into the
# Hugging Face cache, where Snakemake runs. Local paths need nothing; train/evaluate then run
# with HF_HUB_OFFLINE=1. An extra metric not cached fails `snakemake -n`; this target alone
# (`snakemake --profile <profile> -f results/sweeps/<sweep>/prefetch.json`) fills the cache.
rule prefetch:
    output:
        "results/sweeps/{sweep}/prefetch.json",
    log:
        "results/sweeps/{sweep}/logs/prefetch.log",
    localrule: True
    conda:
        "../../environment.yaml"
    params:
        hub=get_sweep_hub_names,
    script:
        "../scripts/prefetch.py"

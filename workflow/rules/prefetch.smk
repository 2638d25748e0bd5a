# ---------------------------------------------------------------- prefetch
# Compute nodes are often offline: download every hub model, tokenizer, dataset and
# BERTScore model a sweep names into the Hugging Face cache, where Snakemake runs.
# Local paths need nothing; train/evaluate then run with HF_HUB_OFFLINE=1.
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

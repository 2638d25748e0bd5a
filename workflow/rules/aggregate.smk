# ---------------------------------------------------------------- aggregate
# One row per run (config columns + metrics) and one row per config over seeds.
rule aggregate:
    input:
        get_sweep_summaries,
    output:
        comparison="results/sweeps/{sweep}/comparison.csv",
        by_config="results/sweeps/{sweep}/comparison_by_config.csv",
    log:
        "results/sweeps/{sweep}/logs/aggregate.log",
    localrule: True
    conda:
        "../../environment.yaml"
    script:
        "../scripts/aggregate.py"

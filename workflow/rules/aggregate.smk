# ---------------------------------------------------------------- aggregate
# One row per run (config columns + metrics) and one row per config over seeds. Data files
# are inputs of prepare_data: a changed file re-prepares, retrains and re-evaluates its runs.
rule aggregate:
    input:
        summaries=get_sweep_summaries,
    output:
        comparison=report(
            "results/sweeps/{sweep}/comparison.csv",
            caption="../report/comparison_csv.rst",
            category="Sweep {sweep}",
            subcategory="Comparison table",
            labels={"table": "comparison.csv"},
        ),
        by_config=report(
            "results/sweeps/{sweep}/comparison_by_config.csv",
            caption="../report/comparison_by_config.rst",
            category="Sweep {sweep}",
            subcategory="Comparison table",
            labels={"table": "comparison_by_config.csv"},
        ),
    log:
        "results/sweeps/{sweep}/logs/aggregate.log",
    localrule: True
    conda:
        "../../environment.yaml"
    script:
        "../scripts/aggregate.py"

# ---------------------------------------------------------------- plot_loss
# One run's training and evaluation loss against step (log_history.jsonl, step_losses.jsonl).
rule plot_loss:
    input:
        meta=rules.link_checkpoint.output.meta,
    output:
        report(
            "results/{run}/plots/loss.png",
            caption="../report/loss.rst",
            category="Runs",
            subcategory="{run}",
            labels={"run": "{run}", "file": "loss.png"},
        ),
    log:
        "results/{run}/logs/plot_loss.log",
    localrule: True
    conda:
        "../../environment.yaml"
    script:
        "../scripts/plot_loss.py"


# ---------------------------------------------------------------- plot_metric
# A sweep's metric (seed mean, 95% CI) against one swept key; best configuration marked.
rule plot_metric:
    input:
        comparison=rules.aggregate.output.comparison,
        by_config=rules.aggregate.output.by_config,
    output:
        report(
            "results/sweeps/{sweep}/{metric}_vs_{key}.png",
            caption="../report/metric_vs_key.rst",
            category="Sweep {sweep}",
            subcategory="Plots",
            labels={"plot": "{metric} vs {key}"},
        ),
    log:
        "results/sweeps/{sweep}/logs/plot_{metric}_vs_{key}.log",
    wildcard_constraints:
        metric=METRIC_WILDCARD,
        key=r"[A-Za-z0-9_][A-Za-z0-9_.]*",
    localrule: True
    conda:
        "../../environment.yaml"
    params:
        results=get_results_dir,
    script:
        "../scripts/plot_metric.py"


# ---------------------------------------------------------------- plot_loss_curves
# Every run's loss curve overlaid, the best run highlighted; and the comparison table as HTML.
rule plot_loss_curves:
    input:
        comparison=rules.aggregate.output.comparison,
        meta=get_sweep_metas,
    output:
        curves=report(
            "results/sweeps/{sweep}/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Sweep {sweep}",
            subcategory="Plots",
            labels={"plot": "loss curves"},
        ),
        table=report(
            "results/sweeps/{sweep}/comparison.html",
            caption="../report/comparison.rst",
            category="Sweep {sweep}",
            subcategory="Comparison table",
            labels={"table": "comparison"},
        ),
    log:
        "results/sweeps/{sweep}/logs/plot_loss_curves.log",
    localrule: True
    conda:
        "../../environment.yaml"
    script:
        "../scripts/plot_loss_curves.py"

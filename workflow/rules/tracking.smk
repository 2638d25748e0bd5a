# ---------------------------------------------------------------- mlflow
# A sweep's finished run folders -> its MLflow experiment (one MLflow run per run folder),
# imported on the submitting host: jobs never write to the store. Store: results/mlflow.db,
# or MLFLOW_TRACKING_URI. Importing again updates, never duplicates.
rule mlflow:
    input:
        summaries=get_sweep_summaries,
    output:
        "results/sweeps/{sweep}/mlflow.json",
    log:
        "results/sweeps/{sweep}/logs/mlflow.log",
    localrule: True
    conda:
        "../../environment.yaml"
    script:
        "../scripts/mlflow_import.py"


# ---------------------------------------------------------------- tensorboard_hparams
# TensorBoard's HParams table of a sweep: each run's swept keys against its final metrics
# (the training curves are in each run folder already: tensorboard --logdir results).
rule tensorboard_hparams:
    input:
        summaries=get_sweep_summaries,
    output:
        directory("results/sweeps/{sweep}/tensorboard"),
    log:
        "results/sweeps/{sweep}/logs/tensorboard_hparams.log",
    localrule: True
    conda:
        "../../environment.yaml"
    script:
        "../scripts/tensorboard_hparams.py"

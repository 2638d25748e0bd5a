# ---------------------------------------------------------------- track
# A sweep's finished run folders -> the trackers' views of them, made on the submitting host
# (jobs never write to a tracking store):
#   - its MLflow experiment, one MLflow run per run folder (store: results/mlflow.db, or
#     MLFLOW_TRACKING_URI); importing again updates, never duplicates; mlflow.json names them;
#   - its TensorBoard HParams table: each run's swept keys against its final metrics (the
#     training curves are in each run folder already: tensorboard --logdir results).
rule track:
    input:
        summaries=get_sweep_summaries,
    output:
        mlflow="results/sweeps/{sweep}/mlflow.json",
        hparams=directory("results/sweeps/{sweep}/tensorboard"),
    log:
        "results/sweeps/{sweep}/logs/track.log",
    localrule: True
    conda:
        "../../environment.yaml"
    script:
        "../scripts/track.py"

# Helpers for the rules: sweep expansion and input functions. Cheap at parse time (no torch):
# every Slurm job re-parses the workflow.
import functools
from pathlib import Path

from ledsweep.aggregate import METRICS
from ledsweep.config import RUN_NAME_PATTERN
from ledsweep.sweep import SWEEP_NAME, SweepError, load_sweeps, write_run_config
from snakemake.exceptions import WorkflowError

try:
    SWEEPS = load_sweeps(config, only=config.get("run_sweeps"))
except SweepError as e:
    raise WorkflowError(f"invalid sweep config: {e}") from None

RUNS = {name: run for sweep in SWEEPS.values() for name, run in sweep.runs.items()}

# wildcard patterns (constraints are set in the Snakefile): any valid run/sweep name; input
# functions refuse names that no selected sweep defines (one pattern scales to 10,000 runs)
RUN_WILDCARD = RUN_NAME_PATTERN.strip("^$")
SWEEP_WILDCARD = SWEEP_NAME.pattern.strip("^$")
METRIC_WILDCARD = "|".join(METRICS)


def get_all_comparisons():
    """Every selected sweep's comparison table (the default target)."""
    return expand("results/sweeps/{sweep}/comparison.csv", sweep=SWEEPS)


def get_all_plots():
    """Every run's loss plot and every selected sweep's plots (also in the default target)."""
    from ledsweep.plots import sweep_plot_names

    per_run = expand("results/{run}/plots/loss.png", run=RUNS)
    per_sweep = [
        f"results/sweeps/{name}/{plot}"
        for name, sweep in SWEEPS.items()
        for plot in [*sweep_plot_names(sweep), "comparison.html"]
    ]
    return per_run + per_sweep


def get_sweep_metas(wildcards):
    """Every run's meta.json (train output): the loss curves come from the run folders."""
    return expand("results/{run}/meta.json", run=SWEEPS[wildcards.sweep].runs)


def get_run(wildcards):
    try:
        return RUNS[wildcards.run]
    except KeyError:
        raise WorkflowError(
            f"results/{wildcards.run}: no run of that name in the selected sweeps "
            f"({', '.join(SWEEPS)}); run names look like {next(iter(RUNS), '<sweep>_<slug>')}"
        ) from None


def get_run_config(wildcards):
    """The run's fully resolved config, passed as a param: a real change re-runs the run."""
    return get_run(wildcards).config


def get_prefetch_marker(wildcards):
    """Hub downloads of the run's sweep (ancient: re-prefetching never forces a rerun); none when
    the sweep names only local paths and packaged models (no prefetch job, no edge per run).
    """
    sweep = get_run(wildcards).sweep
    if not any(sweep_hub_names(sweep).values()):
        return []
    return ancient(f"results/sweeps/{sweep}/prefetch.json")


def get_sweep_summaries(wildcards):
    return expand("results/{run}/summary.json", run=SWEEPS[wildcards.sweep].runs)


def get_sweep_data_files(wildcards):
    """The sweep's local data files that exist: a changed file re-runs `aggregate`, which marks the
    runs trained on its old content as stale (a vanished file is the runs' own failure).
    """
    files = {
        path
        for run in SWEEPS[wildcards.sweep].runs.values()
        for split in ("train", "validation", "test")
        if (path := run.config["data"][f"{split}_file"])
    }
    return sorted(p for p in files if Path(p).is_file())


@functools.cache
def sweep_hub_names(sweep):
    from ledsweep.prefetch import hub_names

    return hub_names(r.config for r in SWEEPS[sweep].runs.values())


def get_sweep_hub_names(wildcards):
    return sweep_hub_names(wildcards.sweep)


def print_comparison_paths():
    """After a successful run: where each sweep's tables are."""
    for name in SWEEPS:
        table = Path("results/sweeps") / name / "comparison.csv"
        if table.exists():
            print(
                f"sweep {name}: comparison table {table}, by config {table.with_name('comparison_by_config.csv')}"
            )

# Helpers for the rules: sweep expansion and input functions. Cheap at parse time (no torch):
# every Slurm job re-parses the workflow.
import collections
import functools
import os
import re
import sys
from pathlib import Path

from ledsweep.aggregate import group_keys, metric_names
from ledsweep import factory, slurm_limits
from ledsweep.config import training_part
from ledsweep.schema import RUN_NAME_PATTERN
from ledsweep.linking import link_checkpoint
from ledsweep.data import DATA_KEY_PATTERN, data_keys
from ledsweep.search import read_decision
from ledsweep.sweep import (
    SWEEP_NAME,
    SweepError,
    load_sweeps,
    trainers,
    validate_workflow_config,
    vanished_inputs,
    write_run_config,
)
from snakemake.exceptions import WorkflowError

try:  # JSON Schema (workflow/schemas/config.schema.yaml); errors name the sweep and key
    validate_workflow_config(config, f"{workflow.basedir}/schemas/config.schema.yaml")
except SweepError as e:
    raise WorkflowError(str(e)) from None
try:
    SWEEPS = load_sweeps(config, only=config.get("run_sweeps"))
except SweepError as e:
    raise WorkflowError(f"invalid sweep config: {e}") from None

RUNS = {name: run for sweep in SWEEPS.values() for name, run in sweep.runs.items()}

# decoding variants: runs of a sweep that differ only in generation.*/evaluation.* train once
TRAINED_BY = {
    name: trainer
    for sweep in SWEEPS.values()
    for name, trainer in trainers(sweep).items()
}

# prepared data: one job per distinct data setting, shared by every run (and sweep) that needs it
RUN_DATA_KEY, DATA_SPECS = data_keys(RUNS)
DATA_KEY_WILDCARD = DATA_KEY_PATTERN

# wildcard patterns (constraints are set in the Snakefile): any valid run/sweep name; input
# functions refuse names that no selected sweep defines (one pattern scales to 10,000 runs)
RUN_WILDCARD = RUN_NAME_PATTERN.strip("^$")
SWEEP_WILDCARD = SWEEP_NAME.pattern.strip("^$")
# the metrics of the selected sweeps (ledsweep.metrics_registry, plus any extra ones)
METRICS = dict.fromkeys(m for sweep in SWEEPS.values() for m in metric_names(sweep))
METRIC_WILDCARD = "|".join(map(re.escape, METRICS))


def report_only(argv):
    """`snakemake --report FILE` (not --report-after-run): a report of what exists, nothing is run.
    Snakemake does not tell the Snakefile that it is making a report (it parses the workflow before it
    knows), so the command line says it.
    """
    asked = any(a == "--report" or a.startswith("--report=") for a in argv)
    return asked and "--report-after-run" not in argv


REPORT_ONLY = report_only(sys.argv)


def sweep_targets(name):
    """The default target's files for one sweep: what the report shows (`shown_targets`), and the
    trackers' views that the track rule makes (mlflow.json, the TensorBoard HParams sessions).
    """
    return [*shown_targets(name), *expand(list(rules.track.output), sweep=name)]


def shown_targets(name):
    """A sweep's files that the report shows (every run's loss plot, the tables, the plots), named
    by the rules that make them (aggregate.smk, plots.smk): the library takes the paths it writes.
    """
    sweep = SWEEPS[name]
    return [
        *run_loss_plots(name),
        *expand(rules.aggregate.output.comparison, sweep=name),
        *expand(
            rules.plot_metric.output[0],
            sweep=name,
            metric=sweep.primary_metric,
            key=group_keys(sweep),
        ),
        *sweep_curves(name),
    ]


def run_loss_plots(name):
    return expand(rules.plot_loss.output[0], run=list(SWEEPS[name].runs))


def sweep_curves(name):
    """loss_curves.png and comparison.html (rule plot_loss_curves)."""
    return expand(list(rules.plot_loss_curves.output), sweep=name)


def report_targets(name):
    """The sweep's targets that a report can show now: those that exist, and every file that the
    report marks upstream of them too (each run's config.yaml; summary.json under the tables). A
    sweep never run is left out, one made in part (`snakemake results/sweeps/<sweep>/comparison.csv`
    makes no plots) is shown in part, instead of failing the report with "marked for report but
    does not exist".
    """
    have = lambda path: Path(path).is_file()  # noqa: E731
    runs = SWEEPS[name].runs
    configs = {r for r in runs if have(expand(rules.run_config.output[0], run=r)[0])}
    per_run = {path: r in configs for r, path in zip(runs, run_loss_plots(name))}
    tables = expand(list(rules.aggregate.output), sweep=name)
    tables_ok = all(map(have, tables)) and len(configs) == len(runs)
    tables_ok = tables_ok and all(
        map(have, expand(rules.evaluate.output.summary, run=runs))
    )
    curves = sweep_curves(name)
    curves_ok = tables_ok and all(map(have, curves))
    return [
        path
        for path in shown_targets(name)
        if have(path) and per_run.get(path, curves_ok if path in curves else tables_ok)
    ]


def get_all_targets():
    """The default target (all): every selected sweep's files; with --report, those that
    exist, saying what is left out.
    """
    if not REPORT_ONLY:
        return [path for name in SWEEPS for path in sweep_targets(name)]
    out = []
    for name in SWEEPS:
        wanted, shown = shown_targets(name), report_targets(name)
        out += shown
        shown_set = set(shown)
        if not shown:
            print(
                f"report: sweep {name} left out: it has no results yet (make them with: snakemake "
                f"--profile <profile> {expand(rules.aggregate.output.comparison, sweep=name)[0]})",
                file=sys.stderr,
            )
        elif len(shown) < len(wanted):
            missing = [p for p in wanted if p not in shown_set]
            print(
                f"report: sweep {name}: {len(shown)} of {len(wanted)} results in the report, "
                f"{len(missing)} not made yet (e.g. {missing[0]}; `snakemake --profile <profile>` makes them)",
                file=sys.stderr,
            )
        else:
            print(f"report: sweep {name}: all {len(wanted)} results", file=sys.stderr)
    return out


def get_results_dir(wildcards, input):
    """The folder of the run folders, for a rule whose input is a sweep's table
    (results/sweeps/<sweep>/comparison.csv): a param, so that its script never names it.
    """
    return str(Path(input.comparison).parents[2])


def get_sweep_metas(wildcards):
    """Every run's meta.json (train output): the loss curves come from the run folders."""
    return expand(rules.link_checkpoint.output.meta, run=SWEEPS[wildcards.sweep].runs)


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


def get_train_config(wildcards):
    """The training keys of a run that trains for its group (decoding keys left out: never a retrain)."""
    run = get_run(wildcards)
    if TRAINED_BY[run.name] != run.name:
        raise WorkflowError(
            f"results/{run.name}/trained: {run.name} shares the training of {TRAINED_BY[run.name]} "
            f"(they differ only in decoding keys); its checkpoint/ links to results/{TRAINED_BY[run.name]}/trained"
        )
    return training_part(run.config)


def get_model_code(wildcards):
    """model.factory's source file: an input of train, so a change to the model code retrains the run
    (a missing file: Snakemake names it; a module not found: the job does)."""
    spec = get_run(wildcards).config["model"].get("factory")
    if not spec:
        return []
    if factory.is_file_spec(spec):
        return factory.parse(spec)[0]
    found = factory.source_file(spec)
    return [str(found)] if found else []


def get_trained_checkpoint(wildcards):
    """The trained model this run uses: its own, or that of the run it shares training with."""
    return expand(
        rules.train.output.checkpoint, run=TRAINED_BY[get_run(wildcards).name]
    )[0]


def get_trained_meta(wildcards):
    return expand(rules.train.output.meta, run=TRAINED_BY[get_run(wildcards).name])[0]


def get_trained_dir(wildcards):
    """The run's own trained/ folder (a halving rung trains there; not an output of the rung)."""
    return str(Path(expand(rules.train.output.meta, run=wildcards.run)[0]).parent)


def get_prepared_data(wildcards):
    """The run's prepared (tokenized) data, made by rule prepare_data."""
    return prepared_dir(RUN_DATA_KEY[get_run(wildcards).name])


@functools.cache
def prepared_dir(data_key):
    """One path per data key, shared by its runs' train and evaluate jobs (planning 20,000 runs)."""
    return expand(rules.prepare_data.output[0], data_key=data_key)[0]


def get_data_spec(wildcards):
    """What prepare_data builds for this key (data files, columns, lengths, limits, tokenizer)."""
    try:
        return DATA_SPECS[wildcards.data_key]
    except KeyError:
        raise WorkflowError(
            f"results/prepared/{wildcards.data_key}: no run of the selected sweeps uses this data key"
        ) from None


def get_data_files(wildcards):
    """The local data files of a data key that exist: real inputs, so a changed file re-prepares and
    retrains. A missing one is left to the job, which fails naming it, while other runs go on.
    """
    return [p for p in get_data_spec(wildcards)["files"].values() if Path(p).exists()]


def get_data_prefetch_markers(wildcards):
    """Hub downloads (datasets, tokenizers) of every sweep that uses this data key."""
    sweeps = {
        r.sweep for name, r in RUNS.items() if RUN_DATA_KEY[name] == wildcards.data_key
    }
    return [
        ancient(expand(rules.prefetch.output[0], sweep=s)[0])
        for s in sorted(sweeps)
        if any(sweep_hub_names(s).values())
    ]


def get_prefetch_marker(wildcards):
    """Hub downloads of the run's sweep (ancient: re-prefetching never forces a rerun); none when
    the sweep names only local paths and packaged models (no prefetch job, no edge per run).
    """
    sweep = get_run(wildcards).sweep
    check_extra_metrics(sweep)
    if not any(sweep_hub_names(sweep).values()):
        return []
    return ancient(expand(rules.prefetch.output[0], sweep=sweep)[0])


@functools.cache
def check_extra_metrics(sweep):
    """Every `evaluation.extra_metrics` entry of the sweep loads offline: a local module that exists, or a
    hub metric in the evaluate module cache (a filesystem check: no `import evaluate`). Run by each train
    job's input function, so `snakemake -n` fails here while `snakemake -f .../prefetch.json` runs.
    """
    from ledsweep.metric_sources import missing_metrics, prefetch_hint

    missing = missing_metrics(r.config for r in SWEEPS[sweep].runs.values())
    if missing:
        hints = []
        if any("not in the evaluate module cache" in why for why in missing.values()):
            hints.append(
                f"prefetch hub metrics where there is internet (the login node): {prefetch_hint(sweep)}"
            )
        if any(why.startswith("no metric module") for why in missing.values()):
            hints.append("fix the path of a local module or remove it")
        raise WorkflowError(
            f"sweep {sweep}: evaluation.extra_metrics: jobs run offline and cannot load "
            + "; ".join(f"{name!r}: {why}" for name, why in missing.items())
            + ". To fix: "
            + "; ".join(hints)
        )


def get_sweep_summaries(wildcards):
    return expand(rules.evaluate.output.summary, run=SWEEPS[wildcards.sweep].runs)


@functools.cache
def sweep_hub_names(sweep):
    from ledsweep.prefetch import hub_names

    return hub_names(r.config for r in SWEEPS[sweep].runs.values())


def get_sweep_hub_names(wildcards):
    return sweep_hub_names(wildcards.sweep)


def print_comparison_paths():
    """After a successful run: where each sweep's tables are."""
    for name in SWEEPS:
        table, by_config = expand(list(rules.aggregate.output), sweep=name)
        if Path(table).exists():
            print(f"sweep {name}: comparison table {table}, by config {by_config}")


def explain_failure(log_path):
    """After a failed run: an input removed while the sweep ran is named as such (Snakemake blames latency)."""
    try:
        text = Path(log_path).read_text(errors="replace")
    except (OSError, TypeError):
        return
    for line in vanished_inputs(text):
        print(line, file=sys.stderr)


def stop_on_sigterm():
    """SIGTERM acts like Ctrl-C: Snakemake cancels the sweep's queued and running cluster jobs and exits.
    Snakemake's own SIGTERM handler waits for every running job to finish, pending Slurm jobs included
    (minutes to forever). LEDSWEEP_LEAVE_JOBS=1: SIGTERM and Ctrl-C exit at once and leave the jobs
    queued (a later `snakemake` run picks up their results). Called by `onstart`, which runs in the
    main Snakemake process only, after Snakemake installed its handler."""
    import signal

    leave = os.environ.get("LEDSWEEP_LEAVE_JOBS") == "1"

    def stop(signum, frame):
        if leave:
            print(
                f"ledsweep: {signal.Signals(signum).name}: exiting, cluster jobs left queued "
                "(LEDSWEEP_LEAVE_JOBS=1)",
                file=sys.stderr,
                flush=True,
            )
            os._exit(128 + signum)
        raise KeyboardInterrupt  # Snakemake's scheduler cancels its jobs (scancel) on it

    signal.signal(signal.SIGTERM, stop)
    if leave:
        signal.signal(signal.SIGINT, stop)


def check_cluster_requests():
    """Before anything is submitted to Slurm: every job's CPUs, memory, GPUs and time against the partitions
    (ledsweep.slurm_limits); a request no partition can run stops the workflow, one line per rule, instead
    of pending for ever. Then job arrays against the limits that would make the Slurm plugin hang
    (slurm_limits.array_stall_problem). Called by `onstart` (the main process, after the DAG is built).
    """
    if getattr(workflow.executor_plugin, "name", None) != "slurm":
        return
    settings = workflow.executor_settings
    path = getattr(settings, "partition_config", None) or os.environ.get(
        "SNAKEMAKE_SLURM_PARTITIONS"
    )
    partitions = (
        slurm_limits.read_partition_file(path)
        if path
        else slurm_limits.query_partitions()
    )
    problems = {}  # per rule: its problem (None: it fits a partition)
    remote = collections.Counter()  # per rule: its jobs going to Slurm
    for job in workflow.dag.needrun_jobs():
        if job.is_local:
            continue
        remote[job.rule.name] += 1
        if job.rule.name in problems:
            continue
        r = job.resources
        gpus = r.get("gpu") or 0
        cpus = job.threads if not gpus else gpus * (r.get("cpus_per_gpu") or 1)
        request = {
            "cpus": cpus,
            "mem_mb": r.get("mem_mb") or 0,
            "gpus": gpus,
            "runtime": r.get("runtime") or 0,
        }
        problems[job.rule.name] = slurm_limits.request_problem(
            job.rule.name, request, partitions or []
        )
    found = [p for p in problems.values() if p]
    if found:
        raise WorkflowError("requests no Slurm partition can run:\n" + "\n".join(found))
    timespan = workflow.scheduling_settings.max_jobs_per_timespan
    stall = slurm_limits.array_stall_problem(
        getattr(settings, "array_jobs", None),
        dict(remote),
        workflow.resource_settings.nodes,
        timespan.max_jobs if timespan else None,
    )
    if stall:
        raise WorkflowError(stall)


# ---------------------------------------------------------------- successive halving
def get_halving(wildcards):
    """The sweep's halving settings (rungs, keep, metric)."""
    h = SWEEPS[wildcards.sweep].halving
    if h is None:
        raise WorkflowError(f"sweep {wildcards.sweep} has no halving: section")
    if not 1 <= int(wildcards.rung) < len(h.rungs):
        raise WorkflowError(
            f"results/sweeps/{wildcards.sweep}/halving/rung{wildcards.rung}.json: decisions are made at "
            f"rungs 1 to {len(h.rungs) - 1} (rungs: {list(h.rungs)})"
        )
    return {"rungs": list(h.rungs), "keep": h.keep, "metric": h.metric}


def halving_entrants(sweep, rung):
    """The runs of `sweep` that train to rung `rung` (1-based): all at rung 1, then the ones the
    previous decision kept (a checkpoint: known once that decision file exists)."""
    if rung == 1:
        return list(SWEEPS[sweep].runs)
    decision = checkpoints.halving_decision.get(sweep=sweep, rung=rung - 1).output[0]
    return read_decision(decision)["kept"]


def get_rung_results(wildcards):
    """The rung results a decision ranks: every run that entered the rung, at its step."""
    step = get_halving(wildcards)["rungs"][int(wildcards.rung) - 1]
    entrants = halving_entrants(wildcards.sweep, int(wildcards.rung))
    return expand(rules.train_rung.output[0], run=entrants, step=step)


def get_rung_entry(wildcards):
    """The decision that let a run into this rung (none at the first)."""
    run = get_run(wildcards)
    h = SWEEPS[run.sweep].halving
    if h is None or int(wildcards.step) not in h.rungs[:-1]:
        raise WorkflowError(
            f"results/{run.name}/rungs/{wildcards.step}.json: not a rung of sweep {run.sweep} "
            f"(rungs before the last: {list(h.rungs[:-1]) if h else 'no halving: section'})"
        )
    rung = h.rungs.index(int(wildcards.step)) + 1
    if rung == 1:
        return []
    decision = checkpoints.halving_decision.get(sweep=run.sweep, rung=rung - 1).output[
        0
    ]
    if run.name not in read_decision(decision)["kept"]:
        raise WorkflowError(f"{run.name} was stopped at rung {rung - 1} ({decision})")
    return decision


def get_halving_decisions(wildcards):
    """A halving run's decisions up to the one that stopped it (all of them when it went on)."""
    run = get_run(wildcards)
    h = SWEEPS[run.sweep].halving
    out = []
    for rung in range(1, len(h.rungs) if h else 0):
        decision = checkpoints.halving_decision.get(sweep=run.sweep, rung=rung).output[
            0
        ]
        out.append(decision)
        if run.name not in read_decision(decision)["kept"]:
            break
    return out

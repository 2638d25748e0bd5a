"""A request no Slurm partition can run is refused before submission (issue 26.2): the partition limits as sinfo
and the plugin's partition file give them, and the one line that names the rule, the resource and the largest
value available. The refusal through the real workflow and cluster is in tests/test_slurm.py."""

from __future__ import annotations

import math

import pytest

from ledsweep.slurm_limits import (
    Partition,
    array_stall_problem,
    minutes,
    parse_sinfo,
    read_partition_file,
    request_problem,
)

SINFO = """\
debug*|2|21694|gpu:2|infinite
gpu|64|512000|gpu:a100:4(S:0-1)|2-00:00:00
gpu|32|256000+|gpu:h100:8|2-00:00:00
short|16|64000|(null)|30:00
"""


def test_sinfo_partitions_take_the_largest_node_of_each():
    parts = {p.name: p for p in parse_sinfo(SINFO)}
    assert parts["debug"] == Partition("debug", 2, 21694, 2, math.inf)
    assert parts["gpu"] == Partition("gpu", 64, 512000, 8, 2880)
    assert parts["short"] == Partition("short", 16, 64000, 0, 30)


@pytest.mark.parametrize(
    "text, expected",
    [("infinite", math.inf), ("30", 30), ("30:00", 30), ("2:00:00", 120), ("1-12:00:00", 2160), ("1-12", 2160)],
)
def test_slurm_times_in_minutes(text, expected):
    assert minutes(text) == expected


def test_a_request_no_partition_can_run_names_rule_resource_and_largest():
    parts = parse_sinfo(SINFO)
    assert request_problem("train", {"cpus": 8, "mem_mb": 16000, "gpus": 4, "runtime": 240}, parts) is None
    line = request_problem("prepare_data", {"cpus": 128, "mem_mb": 8000, "gpus": 0, "runtime": 120}, parts)
    assert line.startswith("rule prepare_data asks for 128 CPUs (cpus); the most a partition offers is 64")
    assert "(partition gpu)" in line
    line = request_problem("train", {"cpus": 2, "mem_mb": 1000, "gpus": 16, "runtime": 60}, parts)
    assert "asks for 16 GPUs (gpus); the most a partition offers is 8" in line
    line = request_problem("train", {"cpus": 8, "mem_mb": 1000, "gpus": 4, "runtime": 5000}, parts)
    assert "asks for 5000 minutes (runtime); the most a partition offers is 2880" in line
    # two resources too large everywhere: the first is named, against all partitions
    line = request_problem("evaluate", {"cpus": 128, "mem_mb": 10**7, "gpus": 0, "runtime": 60}, parts)
    assert "asks for 128 CPUs (cpus); the most a partition offers is 64" in line  # two resources too large


def test_the_plugins_partition_file(tmp_path):
    path = tmp_path / "partitions.yaml"
    path.write_text("partitions:\n  cpu: {max_threads: 32, max_mem_mb: 128000, max_runtime: '1-00:00:00'}\n"
                    "  gpu: {max_threads: 16, max_gpu: 4}\n")  # fmt: skip
    parts = {p.name: p for p in read_partition_file(path)}
    assert parts["cpu"] == Partition("cpu", 32, 128000, 0, 1440) and parts["gpu"].gpus == 4
    assert "asks for 2 GPUs" not in (request_problem("t", {"cpus": 8, "gpus": 2}, list(parts.values())) or "")
    assert "64 CPUs" in request_problem("t", {"cpus": 64}, list(parts.values()))


def test_job_arrays_below_the_jobs_limit_are_refused_naming_both_numbers():
    """Issue 26: arrays hang the Slurm plugin (2.8.0, its issue 473) when `jobs` or `max-jobs-per-timespan`
    cuts a batch; found at 50 runs with `jobs: 50`."""
    jobs = {"prepare_data": 1, "train": 50, "evaluate": 50}
    problem = array_stall_problem("train,train_rung,evaluate", jobs, 50, 100)
    assert problem.startswith("101 Slurm jobs to run, 100 of them as job arrays")
    assert "jobs is 50 and max-jobs-per-timespan is 100" in problem and "at least 101" in problem
    assert array_stall_problem("train,evaluate", jobs, None, 1000) is None  # jobs: unlimited
    assert array_stall_problem(None, jobs, 50, 100) is None  # no arrays: Snakemake's limits are safe
    assert array_stall_problem("all", {"train": 3}, 2, None) == (
        "3 Slurm jobs to run, 3 of them as job arrays (slurm-array-jobs: all), but jobs is 2: the Slurm plugin "
        "would leave the jobs it is not handed at once unsubmitted and the sweep would hang "
        "(snakemake-executor-plugin-slurm issue 473). Set jobs to at least 3 in your profile (Slurm's own "
        "per-user limits still apply), or name fewer rules in slurm-array-jobs"
    )

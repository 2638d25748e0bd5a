"""rule verify: every run of a sweep -> verify.csv (drift check + quick replay; the reports go to the log)."""

import csv
import io
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 - `snakemake` is injected

from ledsweep.drift import VerifyError  # noqa: E402
from ledsweep.runfolder import atomic_write_text  # noqa: E402
from ledsweep.verify import EXIT_CANNOT_VERIFY, verify_run  # noqa: E402

COLUMNS = ["run_name", "verdict", "exit_code", "differs", "drift", "steps", "seconds", "details"]
rows = []
for summary in snakemake.input:  # noqa: F821
    run = Path(summary).parent
    try:
        report = verify_run(run, steps=snakemake.params.steps)  # noqa: F821
    except VerifyError as e:
        print(f"error: {e}", file=sys.stderr)
        rows.append({"run_name": run.name, "verdict": "error", "exit_code": EXIT_CANNOT_VERIFY, "details": str(e)})
        continue
    print(report.format() + "\n", file=sys.stderr)
    rows.append(
        {
            "run_name": run.name,
            "verdict": report.verdict,
            "exit_code": report.exit_code,
            "differs": ";".join(d.field for d in report.differences if d.severity != "info"),
            "drift": ";".join(d.field for d in report.differences if d.severity == "info"),
            "steps": report.replay.get("steps"),
            "seconds": round(sum(report.seconds.values()), 1),
            "details": "; ".join(f"{d.field}: {d.recorded} -> {d.now}" for d in report.differences),
        }
    )

buf = io.StringIO()
writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
writer.writeheader()
writer.writerows(rows)
atomic_write_text(snakemake.output[0], buf.getvalue())  # noqa: F821
counts = {v: sum(r["verdict"] == v for r in rows) for v in dict.fromkeys(r["verdict"] for r in rows)}
print(f"{snakemake.output[0]}: " + ", ".join(f"{n} {v}" for v, n in counts.items()), file=sys.stderr)  # noqa: F821

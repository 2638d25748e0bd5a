# ---------------------------------------------------------------- verify
# Audit every finished run of a sweep: drift since it ran (code, libraries, data, config,
# device) and a replay of its first steps. Not a default target; ask for it by name:
#   snakemake --profile profiles/local results/sweeps/demo/verify.csv
# (add -f to audit again later: the table is not redone when only the environment changed).
rule verify:
    input:
        get_sweep_summaries,
    output:
        "results/sweeps/{sweep}/verify.csv",
    log:
        "results/sweeps/{sweep}/logs/verify.log",
    localrule: True
    conda:
        "../../environment.yaml"
    params:
        steps=20,
    script:
        "../scripts/verify.py"

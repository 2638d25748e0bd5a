"""ledsweep: reproducible LED summarization runs and Snakemake sweeps."""

__version__ = "0.1.0"

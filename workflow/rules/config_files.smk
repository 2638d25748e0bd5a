# The workflow's config files through the strict YAML loader (tags, duplicate keys, anchors refused), before
# Snakemake's own loader reads them silently.
from ledsweep.sweep import SweepError, check_config_files
from snakemake.exceptions import WorkflowError

try:
    check_config_files(["config/config.yaml", *workflow.overwrite_configfiles])
except SweepError as e:
    raise WorkflowError(str(e)) from None

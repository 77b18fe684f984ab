# Settings, the frozen group manifest and every path, from the dsa110ms package (one place).
import sys

# The package lives beside the Snakefile: importable here without installing it (e.g. in a conda
# environment made from envs/dsa110ms.yaml), and in `script:` jobs through PYTHONPATH.
sys.path.insert(0, workflow.basedir)

from dsa110ms.run import hooks as dsa110ms_hooks
from dsa110ms.run import internals as dsa110ms_internals
from dsa110ms.run import workflow as dsa110ms_workflow

dsa110ms_workflow.export_package_path(workflow.basedir)
dsa110ms_workflow.log_to_stderr()

RUN = dsa110ms_workflow.setup_run(config, workflow)


wildcard_constraints:
    group=r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}",
    filetime=r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}",
    subband=r"\d{2}",

# Settings, the frozen group manifest and every path, from the dsa110ms package (one place).
# The package is installed into the environment running Snakemake (`make` does it: pip install
# -e .), so the Snakefile and every job import it from there.
from dsa110ms.groups import TIMESTAMP_PATTERN
from dsa110ms.run import hooks as dsa110ms_hooks
from dsa110ms.run import internals as dsa110ms_internals
from dsa110ms.run import workflow as dsa110ms_workflow

dsa110ms_workflow.jobs_use_this_python()
dsa110ms_workflow.log_to_stderr()

RUN = dsa110ms_workflow.setup_run(config, workflow)


wildcard_constraints:
    group=TIMESTAMP_PATTERN,
    filetime=TIMESTAMP_PATTERN,
    subband=r"[0-9]{2}",  # ASCII digits: \d also matches other scripts' digits

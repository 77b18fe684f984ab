# Settings, the frozen group manifest and every path, from the dsa110ms package (one place).
from dsa110ms import workflow as dsa110ms_workflow

dsa110ms_workflow.log_to_stderr()

RUN = dsa110ms_workflow.Run.load(config, is_main_process=workflow.is_main_process)
if workflow.is_main_process:
    dsa110ms_workflow.protect_existing_scratch(RUN.layout)

LOG_DIR = RUN.settings["log_dir"]


wildcard_constraints:
    group=r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}",
    subband=r"\d{2}",

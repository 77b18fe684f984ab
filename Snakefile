# DSA-110 UVH5 subband groups -> validated CASA Measurement Sets.
# Rules wire inputs, outputs, resources and logs; the logic is in the dsa110ms package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "docs/report/workflow.rst"


include: "rules/common.smk"
include: "rules/simulate.smk"
include: "rules/convert.smk"
include: "rules/report.smk"


# every way the run ends cleans up: Ctrl-C twice, SIGHUP, a WorkflowError, nothing to be done
if workflow.is_main_process:

    dsa110ms_hooks.handle_stops(RUN, workflow)


rule all:
    default_target: True
    input:
        published=lambda wildcards: RUN.all_published(),
        report=rules.run_report.output.table,


onstart:
    dsa110ms_hooks.on_start(RUN)
    dsa110ms_internals.retry_inside_cluster_jobs(workflow)
    dsa110ms_internals.keep_going_inside_cluster_jobs(workflow)
    dsa110ms_hooks.admit_groups_by_scratch(RUN, workflow)
    dsa110ms_hooks.overlap_joins(workflow)


onsuccess:
    dsa110ms_hooks.on_finish(RUN, success=True)
    dsa110ms_internals.cancel_rescheduling_timers()


onerror:
    dsa110ms_hooks.on_finish(RUN, success=False)
    dsa110ms_internals.cancel_rescheduling_timers()

# Per group: one template job (what the 16 subbands share, computed once), one job per subband
# file writing a part on scratch, and one job joining them into the MS, validating and
# publishing it. The concat rule's declared output is the group's published stamp, never the MS:
# Snakemake removes declared outputs before a job and after a failure, and must never remove a
# published MS (docs/operations.md, "Concurrent runs").


rule ms_template:
    input:
        uvh5=lambda wc: RUN.template_source(wc.group),
    output:
        template=temp(directory(RUN.template("{group}"))),
    log:
        RUN.log_pattern("{group}/template.log"),
    # the group's longest single job: started first, while the parts fill the other cores;
    # earlier groups first, each job asking for a whole group's scratch (run/scratch.py)
    priority: lambda wc: RUN.priority(wc.group, first=True)
    conda:
        "../envs/dsa110ms.yaml"
    resources:
        mem_mb=1000,
        scratch_mb=lambda wc: RUN.scratch_mb(),
    script:
        "../scripts/write_template.py"


# A one-FIELD MS (config phase_center): the rotation of the group's visibilities to it,
# computed once from one file (pyuvdata, astropy) and applied by each part job.
rule phase_plan:
    input:
        uvh5=lambda wc: RUN.template_source(wc.group),
    output:
        plan=temp(RUN.phase_plan("{group}")),
    log:
        RUN.log_pattern("{group}/phase_plan.log"),
    priority: lambda wc: RUN.priority(wc.group, first=True)
    conda:
        "../envs/dsa110ms.yaml"
    resources:
        mem_mb=1000,
        scratch_mb=lambda wc: RUN.scratch_mb(),
    script:
        "../scripts/write_phase_plan.py"


rule ms_part:
    input:
        uvh5=RUN.input_pattern(),
        plan=RUN.phase_plan_pattern(),
    output:
        part=temp(directory(RUN.part_pattern())),
    log:
        RUN.part_log_pattern(),
    priority: lambda wc: RUN.priority(wc.group)
    conda:
        "../envs/dsa110ms.yaml"
    resources:
        mem_mb=1000,
        scratch_mb=lambda wc: RUN.scratch_mb(),
    # A module and the wildcards only: no path is ever written into a shell command
    # (dsa110ms/run/partjob.py computes the paths declared above from the run's settings).
    shell:
        "python -m dsa110ms.run.partjob {wildcards.group} {wildcards.filetime} {wildcards.subband}"


rule concat:
    input:
        template=lambda wc: RUN.template(wc.group),
        parts=lambda wc: RUN.parts_ascending_frequency(wc.group),
    output:
        published=RUN.published_pattern(),
    log:
        RUN.log_pattern("{group}/concat.log"),
    priority: lambda wc: RUN.priority(wc.group)
    retries: RUN.settings.concat_retries
    conda:
        "../envs/dsa110ms.yaml"
    # No core of its own: a join runs beside the next group's parts, which keep every core busy
    # while it waits on the disk; the joins resource bounds how many run at once
    # (run/hooks.py: overlap_joins). The SLURM profile gives it 1 (profiles/slurm: set-threads).
    threads: 0
    resources:
        mem_mb=2000,
        scratch_mb=lambda wc: RUN.scratch_mb(),
        joins=1,
        attempt=lambda wc, attempt: attempt,
    params:
        complete=lambda wc: RUN.is_complete(wc.group),
        sources=lambda wc: RUN.part_sources(wc.group),
    script:
        "../scripts/join_group.py"

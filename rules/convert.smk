# Per group: one template job (what the 16 subbands share, computed once), one job per subband
# file writing a part on scratch, and one job joining them into the MS, validating and
# publishing it.


rule ms_template:
    input:
        uvh5=lambda wc: RUN.template_source(wc.group),
    output:
        template=temp(directory(RUN.template("{group}"))),
    log:
        f"{LOG_DIR}/{{group}}/template.log",
    # the group's longest single job: started first, while the parts fill the other cores
    priority: 1
    conda:
        "../envs/dsa110ms.yaml"
    resources:
        mem_mb=1000,
    params:
        options=RUN.part_options(),
    script:
        "../scripts/write_template.py"


rule ms_part:
    input:
        uvh5=RUN.input_pattern(),
    output:
        part=temp(directory(RUN.part_pattern())),
    log:
        f"{LOG_DIR}/{{group}}/part_sb{{subband}}_{{filetime}}.log",
    conda:
        "../envs/dsa110ms.yaml"
    resources:
        mem_mb=1000,
    params:
        script=f"{workflow.basedir}/scripts/write_part.py",
        telescope=RUN.settings["telescope"],
        autocorrelations="keep" if RUN.settings["keep_autocorrelations"] else "drop",
    # shell:, not script: - see scripts/write_part.py
    shell:
        "python {params.script:q} --uvh5 {input.uvh5:q} --part {output.part:q}"
        " --group {wildcards.group} --subband {wildcards.subband} --log {log:q}"
        " --telescope {params.telescope} --autocorrelations {params.autocorrelations}"


rule concat:
    input:
        template=lambda wc: RUN.template(wc.group),
        parts=lambda wc: RUN.parts_ascending_frequency(wc.group),
    output:
        ms=directory(RUN.final_ms("{group}")),
    log:
        f"{LOG_DIR}/{{group}}/concat.log",
    retries: RUN.settings["concat_retries"]
    conda:
        "../envs/dsa110ms.yaml"
    resources:
        mem_mb=2000,
        attempt=lambda wc, attempt: attempt,
    params:
        instance=RUN.layout.instance,
        spw_layout=RUN.settings["spw_layout"],
        join_method=RUN.settings["join_method"],
        imaging_columns=RUN.settings["imaging_columns"],
        telescope=RUN.settings["telescope"],
        complete=lambda wc: RUN.is_complete(wc.group),
        group_scratch=lambda wc: str(RUN.layout.group_dir(wc.group)),
        scratch_root=str(RUN.layout.root),
        sources=lambda wc: RUN.part_sources(wc.group),
    script:
        "../scripts/join_group.py"

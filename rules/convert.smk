# One job per subband file writes an MS part on scratch; one job per group joins, validates and
# publishes it.


rule ms_part:
    input:
        uvh5=lambda wc: RUN.input_file(wc.group, wc.subband),
    output:
        part=temp(directory(RUN.part("{group}", "{subband}"))),
    log:
        f"{LOG_DIR}/{{group}}/part_sb{{subband}}.log",
    conda:
        "../envs/dsa110ms.yaml"
    resources:
        mem_mb=1000,
    params:
        options=RUN.part_options(),
    script:
        "../scripts/write_part.py"


rule concat:
    input:
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
        telescope=RUN.settings["telescope"],
        complete=lambda wc: RUN.is_complete(wc.group),
        group_scratch=lambda wc: str(RUN.layout.group_dir(wc.group)),
        scratch_root=str(RUN.layout.root),
        sources=lambda wc: RUN.part_sources(wc.group),
    script:
        "../scripts/join_group.py"

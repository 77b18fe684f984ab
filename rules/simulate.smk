# Demo and test data: simulated DSA-110 groups written into input_dir (`snakemake simulate`).


rule simulate:
    output:
        record=f"{RUN.settings.input_dir}/simulation.json",
    log:
        RUN.log_pattern("simulate.log"),
    conda:
        "../envs/dsa110ms.yaml"
    params:
        spec=RUN.settings.simulate,
    script:
        "../scripts/simulate.py"

"""Rule ms_part: one subband file -> one MS part on scratch.

A command (rules/convert.smk runs it with shell:, not script:): a group has 16 part jobs, and
Snakemake's script: costs ~0.25 s of start-up per job and ~0.7 ms per job when it builds the DAG
(12 s of a dry run over 1,000 groups).
"""

import argparse

from dsa110ms.jobs import part_job

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--uvh5", required=True, help="the subband file")
parser.add_argument("--part", required=True, help="the part to write (a new directory)")
parser.add_argument("--group", required=True)
parser.add_argument("--subband", required=True, type=int)
parser.add_argument("--log", required=True, help="the job's log file")
parser.add_argument("--telescope", required=True, choices=("dsa110", "generic"))
parser.add_argument("--autocorrelations", required=True, choices=("keep", "drop"))
args = parser.parse_args()
part_job(
    uvh5=args.uvh5,
    part=args.part,
    group=args.group,
    subband=args.subband,
    log_path=args.log,
    options={
        "telescope": args.telescope,
        "keep_autocorrelations": args.autocorrelations == "keep",
    },
)

"""DSA-110 UVH5 subband files -> validated CASA Measurement Sets (docs/architecture.md)."""

from dsa110ms import timetables

# astropy offline (no IERS download, no refusal of predictions by age) in every process that
# imports the package: Snakemake's, each job's, the streaming mode's; it imports no astropy.
timetables.install()

"""CASA site configuration (named by CASASITECONFIG) of the package's own jobs: offline measures,
the package's overlay of the casadata package (dsa110ms.casa.measures_overlay: casadata with the
leap seconds and Earth orientation of astropy-iers-data, and the observatory DSA_110).

For CASA outside the package, the overlay holds a site config of literal values that needs no
dsa110ms: ``export CASASITECONFIG=$(python -m dsa110ms.casa siteconfig)``.

Nothing is downloaded and nothing is written to ~/.casa; CASA's own log goes nowhere unless a job
points it at its log file (dsa110ms.casa.log_to).
"""

from dsa110ms.casa import measures_overlay

measurespath = str(measures_overlay())
measures_auto_update = False
data_auto_update = False
# casatools opens `logfile` whatever `nologfile` says; without this it writes casa-*.log in the
# current directory.
logfile = "/dev/null"

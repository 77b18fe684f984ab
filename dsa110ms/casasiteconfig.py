"""CASA site configuration (named by CASASITECONFIG): offline measures, the package's overlay of
the casadata package (dsa110ms.casa.measures_overlay: casadata with the leap-second table of
astropy-iers-data).

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

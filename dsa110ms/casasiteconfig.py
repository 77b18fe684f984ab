"""CASA site configuration (named by CASASITECONFIG): offline measures from the casadata package.

Nothing is downloaded and nothing is written to ~/.casa; CASA's own log goes nowhere unless a job
points it at its log file (dsa110ms.casa.log_to).
"""

import casadata

measurespath = casadata.datapath
measures_auto_update = False
data_auto_update = False
# casatools opens `logfile` whatever `nologfile` says; without this it writes casa-*.log in the
# current directory.
logfile = "/dev/null"

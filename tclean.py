import os, shutil, subprocess, numpy as np
os.environ["CASASITECONFIG"] = "/work/main/dsa110ms/casasiteconfig.py"
W = "/tmp/trial14/casa/tclean"; shutil.rmtree(W, ignore_errors=True); os.makedirs(W); os.chdir(W)
subprocess.run(["/work/main/.venv/bin/python", "-m", "dsa110ms.beam", W + "/dsa.vptable"], check=True)
ms = "/tmp/trial14/dsa/per_subband/out/2026-01-15T03:00:02.ms"
import casatasks as ct
ct.casalog.setlogfile(W + "/casa.log")
r = ct.tclean(vis=ms, imagename=W + "/img", imsize=256, cell="60arcsec", gridder="mosaic", vptable=W + "/dsa.vptable",
              usepointing=True, pbcor=True, niter=100, phasecenter=0, specmode="mfs")
print("tclean ok", os.path.exists(W + "/img.image.pbcor"))
import casatools
ia = casatools.image(); ia.open(W + "/img.image.pbcor"); st = ia.statistics(); ia.close()
print("pbcor max", st["max"], "at", st["maxpos"])

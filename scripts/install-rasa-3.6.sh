#!/usr/bin/env bash
# Install a real Rasa Open Source 3.6 server into its own virtual environment, on Python 3.11.
#
# Rasa 3.6 declares Python <3.11, but it runs on 3.11 once a few of its pins are relaxed:
# its wheel is installed without dependency resolution, then its requirements are installed
# with the markers evaluated for 3.11 (numpy/scipy/scikit-learn/dask pins it only states for
# <3.11 are restored, and matplotlib <3.6, which has no 3.11 wheel, becomes >=3.6,<3.8).
# Seen working: rasa 3.6.21 + rasa-sdk 3.6.2 + tensorflow 2.12.0 on CPython 3.11.7, `rasa init` trains.
#
# usage: scripts/install-rasa-3.6.sh [VENV_DIR]   (about 2.5 GB; ~1 min with a warm pip cache, ~8 cold)
#        VENV_DIR defaults to $RASA_VENV, else ~/.cache/handoff-bridge/rasa-3.6.21 (where the
#        end-to-end tests look). Idempotent: a working install there is left alone.
# then:  VENV_DIR/bin/rasa --version
# Run Rasa with RASA_TELEMETRY_ENABLED=false: on errors it otherwise tries to reach its telemetry
# service, which these machines cannot reach.
set -euo pipefail
venv=${1:-${RASA_VENV:-$HOME/.cache/handoff-bridge/rasa-3.6.21}}
py=${PYTHON:-python3}
if [ -x "$venv/bin/rasa" ] && "$venv/bin/rasa" --version >/dev/null 2>&1; then
  echo "rasa already installed in $venv"; exit 0
fi
mkdir -p "$(dirname "$venv")"
"$py" -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install -q --upgrade pip wheel packaging
work=$(mktemp -d)
"$pip" download -q --no-deps --ignore-requires-python -d "$work" rasa==3.6.21
whl=$(ls "$work"/rasa-3.6.21-*.whl)
"$venv/bin/python" - "$whl" "$work/reqs.txt" <<'PY'
import sys, zipfile
from packaging.requirements import Requirement
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    meta = next(n for n in z.namelist() if n.endswith("METADATA"))
    lines = z.read(meta).decode().splitlines()
env = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
       "platform_machine": "x86_64", "platform_python_implementation": "CPython"}
reqs = []
for line in lines:
    if not line.startswith("Requires-Dist:"):
        continue
    r = Requirement(line.split(":", 1)[1].strip())
    if r.marker and "extra" in str(r.marker):
        continue
    if r.marker and not r.marker.evaluate(env):
        continue
    r.marker = None
    reqs.append("matplotlib>=3.6,<3.8" if r.name == "matplotlib" else str(r))
reqs = [r for r in reqs if not r.startswith(("python-socketio", "python-engineio"))]
# socket.io: python-socketio 5.10+ breaks Rasa 3.6's session_persistence (rasa#13027)
reqs += ["numpy>=1.19.2,<1.25", "scipy>=1.10,<1.11", "scikit-learn>=0.22,<1.2",
         "dask==2022.10.2", "jax<0.4.14", "ml-dtypes<0.3",
         "python-socketio==5.9.0", "python-engineio>=4,<4.8"]
open(out, "w").write("\n".join(reqs) + "\n")
PY
"$pip" install -q --no-deps --ignore-requires-python "$whl"
"$pip" install -q --prefer-binary --ignore-requires-python -r "$work/reqs.txt"
rm -rf "$work"
"$venv/bin/rasa" --version

# Sourced by the golden scripts: sets $python to a python3 that can run the reference scripts
# beside ../shared/golden/README.md (torch and numpy), or exits naming what is missing.
# $PYTHON, when set, is used as given.
python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import torch, numpy' 2>/dev/null; then python=$candidate; break; fi
  done
fi
if [ -z "$python" ]; then
  echo "$(basename "$0"): no python3 with torch and numpy found (Debian: apt-get install python3-torch python3-numpy; or set PYTHON)" >&2
  exit 1
fi

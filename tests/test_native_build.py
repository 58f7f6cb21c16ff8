"""The native build the user gets: no AMX instruction in it, a smoke generation through it in a
subprocess, and a native crash reported as a crash (its signal, where it died, a pointer to doctor)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sounding.supervise import exit_status
from sounding.tools.llm.native import cpu_features, fault_frames, parse_system_info, run_smoke
from tests.conftest import interruptible

#: AMX instructions: tile configuration, loads, stores, zeroing and the dot products (tdpbssd, tdpbf16ps...).
AMX_INSTRUCTION = re.compile(
    r"\s(ldtilecfg|sttilecfg|tileloadd|tileloaddt1|tilestored|tilezero|tilerelease|tdpb\w*|tdpfp16ps)\s"
)
ROOT = Path(__file__).resolve().parent.parent


def amx_instructions(binary: Path) -> set[str]:
    """The AMX mnemonics in a binary's disassembly (objdump -d)."""
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    assert "Disassembly of section" in out, f"objdump read nothing from {binary}"
    return {m.group(1) for m in AMX_INSTRUCTION.finditer(out)}


def llama_libraries() -> list[Path]:
    import llama_cpp

    folder = Path(llama_cpp.__file__).parent / "lib"
    libraries = sorted(p for p in folder.glob("*.so*") if p.is_file())
    assert any("ggml-cpu" in p.name or "ggml" in p.name for p in libraries), f"no ggml library in {folder}"
    return libraries


needs_objdump = pytest.mark.skipif(shutil.which("objdump") is None, reason="needs binutils' objdump")


@needs_objdump
def test_the_amx_scanner_finds_amx_code(tmp_path):
    """Positive control: the same scan finds AMX in a binary that has it, so an empty scan means something."""
    source = tmp_path / "amx.c"
    source.write_text(
        "#include <immintrin.h>\n"
        "void f(const void *cfg, void *buf) { _tile_loadconfig(cfg); _tile_loadd(0, buf, 64);"
        " _tile_dpbssd(2, 0, 1); _tile_release(); }\n"
    )
    obj = tmp_path / "amx.o"
    done = subprocess.run(
        ["gcc", "-O2", "-mamx-tile", "-mamx-int8", "-c", str(source), "-o", str(obj)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"this compiler cannot emit AMX: {done.stderr.decode()[:200]}")
    assert {"ldtilecfg", "tileloadd", "tdpbssd", "tilerelease"} <= amx_instructions(obj)


@needs_objdump
def test_the_bindings_libraries_hold_no_amx_instruction():
    """llama-cpp-python as scripts/bootstrap.sh built it: safe on AMX machines we cannot try."""
    found = {lib.name: amx_instructions(lib) for lib in llama_libraries()}
    assert not any(found.values()), f"AMX instructions in the build: {found}"


@needs_objdump
def test_the_test_servers_binary_holds_no_amx_instruction():
    from tests.test_llm_llama import llama_server_binary

    assert not amx_instructions(llama_server_binary())  # fails under CI when the server was not built


def test_smoke_generation_through_the_users_build():
    """The same check set-up and doctor run: a real completion from the smallest embedded model."""
    result = run_smoke()
    assert result.outcome == "ok", result
    assert result.text.strip() and result.model == "smollm2-135m"
    assert "AMX_INT8" not in result.built_for and "AMX" not in " ".join(result.built_for)
    cpu = cpu_features()
    if "avx2" in cpu.vector:  # a native build uses what the CPU has
        assert "AVX2" in result.built_for


def test_a_native_crash_is_a_result_with_its_signal_and_frame():
    crash = [
        sys.executable,
        "-X",
        "faulthandler",
        "-c",
        "import ctypes\ndef deep():\n    ctypes.string_at(0)\ndeep()",
    ]
    result = run_smoke(child=crash, model_name="test")
    assert result.outcome == "crashed" and result.signal == "SIGSEGV"
    assert result.detail.startswith("Fatal Python error: Segmentation fault")
    assert "in deep" in result.detail and not result.ok


def test_a_hang_and_an_error_are_results_too():
    hang = run_smoke(child=[sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    assert hang.outcome == "timeout" and not hang.ok
    error = run_smoke(child=[sys.executable, "-c", "raise RuntimeError('no backend')"])
    assert error.outcome == "failed" and "RuntimeError: no backend" in error.detail


def test_system_info_and_cpuinfo_are_parsed(tmp_path):
    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 0 | AMX_INT8 = 0 | LLAMAFILE = 1 | "
    assert parse_system_info(info) == ["SSE3", "AVX", "AVX2", "LLAMAFILE"]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "model name\t: Intel(R) Xeon(R) Platinum 8488C\n"
        "flags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512_vnni amx_bf16 amx_tile amx_int8\n"
    )
    cpu = cpu_features(cpuinfo)
    assert cpu.matrix == ["amx_bf16", "amx_int8", "amx_tile"]
    assert cpu.avx512 == ["avx512_vnni", "avx512f"] and "avx2" in cpu.vector
    assert "no AMX" not in cpu.summary() and "Platinum" in cpu.model_name
    assert cpu_features(tmp_path / "missing").vector == []
    frames = fault_frames(
        'Fatal Python error: Segmentation fault\n\nCurrent thread:\n  File "x.py", line 3 in f\n'
    )
    assert frames.splitlines() == ["Fatal Python error: Segmentation fault", 'File "x.py", line 3 in f']


def test_exit_status_of_a_supervised_child():
    assert exit_status(0) == (0, None) and exit_status(2) == (2, None)
    assert exit_status(-signal.SIGINT) == (130, None)
    code, message = exit_status(-signal.SIGSEGV)
    assert code == 139 and message is not None and "SIGSEGV" in message and "sounding doctor" in message
    assert exit_status(-signal.SIGILL)[0] == 132


def _crashing_site(tmp_path: Path, body: str) -> dict[str, str]:
    """A sitecustomize that runs ``body`` only in the supervised child (the parent stays healthy)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"import os\nif os.environ.get('SOUNDING_SUPERVISED') == '1':\n{body}"
    )
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}


def test_the_command_reports_a_native_crash_and_points_to_doctor(tmp_path):
    env = _crashing_site(tmp_path, "    import ctypes\n    ctypes.string_at(0)\n")
    done = subprocess.run(
        [sys.executable, "-m", "sounding", "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 139
    assert "Fatal Python error: Segmentation fault" in done.stderr  # faulthandler: where it died
    assert "sitecustomize.py" in done.stderr
    assert "died from SIGSEGV" in done.stderr and "sounding doctor" in done.stderr


def test_the_command_runs_unsupervised_children_normally():
    done = subprocess.run(
        [sys.executable, "-m", "sounding", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("sounding ")


def test_a_signal_to_the_command_reaches_the_child_and_a_killed_command_takes_the_child_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    env = _crashing_site(
        tmp_path,
        f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n    import time\n    time.sleep(60)\n",
    )
    for sent, wanted in ((signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)):
        pid_file.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "sounding", "--version"],
            env=env,
            stderr=subprocess.PIPE,
            preexec_fn=interruptible,
        )
        _wait_for(pid_file)
        start = time.monotonic()
        os.kill(proc.pid, sent)  # to the command's pid alone, as `kill` or a scheduler would
        proc.wait(timeout=30)
        assert time.monotonic() - start < 20  # the child got it (it would sleep 60 s otherwise)
        assert proc.returncode in (wanted, 1), proc.returncode  # KeyboardInterrupt in site code exits 1
    pid_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sounding", "--version"], env=env, stderr=subprocess.DEVNULL
    )
    child = _wait_for(pid_file)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child), "the child outlived its killed command"


def _wait_for(pid_file: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if pid_file.exists() and pid_file.read_text():
            return int(pid_file.read_text())
        time.sleep(0.05)
    raise AssertionError("the supervised child never started")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False

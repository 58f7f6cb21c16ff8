"""The ``sounding`` command runs the CLI in a child process, so a native crash is reported, not silent.

llama.cpp, torch and the tokenizers are native code: when one of them dies (a segfault, an illegal
instruction), the process is gone before Python can print anything, and the user sees a bare
"Segmentation fault". So the command starts the CLI as a child with Python's faulthandler on (it prints
the Python frames the crash happened in) and, if the child dies from a signal, says so in one line with
the way to diagnose it (``sounding doctor``). The parent only waits and forwards signals:

- Ctrl-C at a terminal reaches the whole foreground process group, child included, so the parent does
  not forward a terminal's SIGINT (the child would see it twice); a SIGINT or SIGTERM sent to the
  parent's pid alone (``kill``, a test, a scheduler) is forwarded once.
- If the parent is killed outright (SIGKILL), the kernel kills the child too (``PR_SET_PDEATHSIG``), so a
  supervised run never outlives its command.

``SOUNDING_SUPERVISED=1`` (set for the child) runs the CLI in this process: no supervision.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from typing import NoReturn

SUPERVISED_ENV = "SOUNDING_SUPERVISED"
#: Signals that mean native code died, not that someone stopped the run.
NATIVE_CRASHES = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT})
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: si_code of a signal the kernel raised (a terminal's Ctrl-C), as opposed to kill() from a process.
SI_KERNEL = 0x80
PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    """In the child, between fork and exec: unblock the signals the parent waits on; die with the parent."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {*FORWARDED, signal.SIGCHLD})
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # prctl is always there on Linux
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def crash_message(signum: int) -> str:
    name = signal.Signals(signum).name
    return (
        f"sounding: the process died from {name} in native code (llama.cpp, torch or another compiled "
        "library; the frames above show where). Run `sounding doctor` to check the llama.cpp build "
        "against this CPU."
    )


def exit_status(returncode: int) -> tuple[int, str | None]:
    """The command's exit code and, for a child killed by a signal, the line that says so."""
    if returncode >= 0:
        return returncode, None
    signum = -returncode
    if signum == signal.SIGINT:
        return 130, None
    if signum in NATIVE_CRASHES:
        return 128 + signum, crash_message(signum)
    if signum == signal.SIGKILL:
        return 137, "sounding: the process was killed (SIGKILL; out of memory?)"
    return 128 + signum, None


def supervise(argv: list[str]) -> int:
    """Run ``python -m sounding argv`` as a child and return the command's exit code."""
    env = {**os.environ, SUPERVISED_ENV: "1"}
    cmd = [sys.executable, "-X", "faulthandler", "-m", "sounding", *argv]
    # Block the forwarded signals before the child exists, so none is lost between start and wait.
    waited = {*FORWARDED, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        child = subprocess.Popen(cmd, env=env, preexec_fn=_child_setup)
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, waited)
        print(f"sounding: cannot start {sys.executable}: {exc}", file=sys.stderr)
        return 3
    while child.poll() is None:
        info = signal.sigtimedwait(waited, 0.5)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        if info.si_signo == signal.SIGINT and info.si_code == SI_KERNEL:
            continue  # a terminal's Ctrl-C: the child, in the same process group, has it already
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            child.send_signal(info.si_signo)
    code, message = exit_status(child.returncode)
    if message:
        sys.stderr.flush()
        print(message, file=sys.stderr)
    return code


def main() -> NoReturn:
    """The console script: supervise, unless this is already the supervised child."""
    if os.environ.get(SUPERVISED_ENV) == "1" or not hasattr(signal, "sigtimedwait"):
        from sounding.cli import main as cli_main

        cli_main()
    raise SystemExit(supervise(sys.argv[1:]))

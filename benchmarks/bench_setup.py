"""Cold set-up before and after the lean llama-cpp-python build, side by side in one run (the machine is
shared and noisy: read the ratio), and optionally the README's whole first `make ask` on the lean arm.

    .venv/bin/python benchmarks/bench_setup.py [--ask] [--out FILE]

Each arm clones the committed HEAD of this repository into a temporary directory and runs
`scripts/bootstrap.sh` there with no virtualenv active, an empty pip cache (so every package is fetched
again and llama-cpp-python is compiled) and an empty SOUNDING_HOME:

- before: the flags set-up used until now (``CMAKE_ARGS=-DLLAVA_BUILD=OFF``; the build tool's own
  parallelism);
- after: the script's defaults: no llama.cpp "common" library either (scripts/llama-lean.cmake) and
  ``CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)``.

The "after" arm runs first, so files cached by the operating system during the other arm cannot favour
it. With ``--ask`` the after arm then runs `make ask` on its fresh home (the question of the README with
its default model): set-up plus that is what a new user waits for.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE_CMAKE_ARGS = "-DLLAVA_BUILD=OFF"


def _fresh_env(work: Path, before: bool) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "CMAKE_ARGS", "CMAKE_BUILD_PARALLEL_LEVEL"}
    }
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if "/.venv/" not in p + "/"
    )
    env["PIP_CACHE_DIR"] = str(work / "pip-cache")
    env["SOUNDING_HOME"] = str(work / "home")
    env["COLUMNS"] = "120"
    if before:
        env["CMAKE_ARGS"] = BEFORE_CMAKE_ARGS
        env["CMAKE_BUILD_PARALLEL_LEVEL"] = ""  # empty: the build tool's default
    return env


def _lib_files(venv: Path) -> list[str]:
    # llama-cpp-python's libraries only (it installs each twice: lib/ and llama_cpp/lib/)
    return sorted(
        {
            p.name
            for p in venv.glob("lib/python*/site-packages/**/lib*.so")
            if "llama" in p.name or "ggml" in p.name
        }
    )


def run_arm(before: bool, ask: bool) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="sounding-setup-"))
    try:
        clone = work / "clone"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        env = _fresh_env(work, before)
        start = time.perf_counter()
        proc = subprocess.run(
            ["bash", "scripts/bootstrap.sh"], cwd=clone, env=env, capture_output=True, text=True
        )
        setup = time.perf_counter() - start
        row: dict[str, object] = {"setup_s": round(setup, 1), "exit": proc.returncode}
        if proc.returncode != 0:
            row["error"] = proc.stderr[-2000:]
            return row
        row["libraries"] = _lib_files(clone / ".venv")
        row["venv_size"] = subprocess.run(
            ["du", "-sh", str(clone / ".venv")], capture_output=True, text=True
        ).stdout.split()[0]
        if ask:
            start = time.perf_counter()
            proc = subprocess.run(["make", "ask"], cwd=clone, env=env, capture_output=True, text=True)
            row["ask_s"] = round(time.perf_counter() - start, 1)
            row["ask_exit"] = proc.returncode
            row["answer_line"] = next((ln.strip() for ln in proc.stdout.splitlines() if "Danube" in ln), "")[
                :100
            ]
        return row
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ask", action="store_true", help="also time the first `make ask` on the lean arm")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    after = run_arm(before=False, ask=args.ask)
    before = run_arm(before=True, ask=False)
    lines = [
        f"# {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} cores; commit {commit.stdout.strip()}",
        "# cold set-up: fresh clone, no virtualenv, empty pip cache (llama-cpp-python compiled), empty SOUNDING_HOME",
        f"before (CMAKE_ARGS={BEFORE_CMAKE_ARGS}): {before['setup_s']} s, exit {before['exit']}, "
        f"venv {before.get('venv_size')}; libraries {before.get('libraries')}",
        f"after (scripts/bootstrap.sh defaults):  {after['setup_s']} s, exit {after['exit']}, "
        f"venv {after.get('venv_size')}; libraries {after.get('libraries')}",
        f"set-up time after / before: {after['setup_s'] / before['setup_s']:.2f}",  # type: ignore[operator]
    ]
    if args.ask:
        lines.append(
            f"after, then `make ask` on the fresh home: {after.get('ask_s')} s, exit {after.get('ask_exit')}: "
            f"{after.get('answer_line')}"
        )
        lines.append(f"fresh clone to first answer (after): {after['setup_s'] + after.get('ask_s', 0):.1f} s")  # type: ignore[operator]
    for name, row in (("before", before), ("after", after)):
        if "error" in row:
            lines.append(f"# {name} failed:\n{row['error']}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

"""Shared fixtures. Real components are used wherever the component is real (models, servers, files)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

# Rich reads the terminal width once, when the CLI's consoles are created: make CLI output wide in tests.
os.environ.setdefault("COLUMNS", "200")

import pytest

from sounding.settings import Settings, load_settings
from sounding.tools.llm.registry import EMBEDDED_MODELS, assemble

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared benchmark data (``../shared/data``, or ``SOUNDING_DATA_DIR``). CI must have it."""
    path = Path(os.environ.get("SOUNDING_DATA_DIR", DATA))
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"benchmark data not found at {path} (CI must run with ../shared beside the clone)")
        pytest.skip(f"benchmark data not found at {path}")
    return path


@pytest.fixture(scope="session")
def test_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sounding-home")


@pytest.fixture(scope="session")
def smollm2_path(test_home: Path) -> Path:
    """The real SmolLM2-135M GGUF, assembled and verified from its PyPI package."""
    return assemble(EMBEDDED_MODELS["smollm2-135m"], test_home / "models")


@pytest.fixture(scope="session")
def smollm2(smollm2_path: Path):
    from sounding.tools.llm.llama_cpp import LlamaCppLLM

    return LlamaCppLLM(
        smollm2_path,
        name="smollm2-135m",
        n_params=EMBEDDED_MODELS["smollm2-135m"].n_params,
        n_ctx=2048,
        n_threads=2,
    )


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("SOUNDING_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    return load_settings(home=tmp_path / "home")


def interruptible() -> None:
    """``preexec_fn`` for a child the test will interrupt: SIGINT back to its default. A test runner
    started in the background (``nohup make test &``) hands its children SIGINT *ignored*, and Python
    then installs no KeyboardInterrupt handler, so Ctrl-C tests would test the runner, not sounding."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def small_corpus(tmp_path):
    path = tmp_path / "small.jsonl"
    rows = [
        ("Budapest", "Budapest is the capital of Hungary, on the Danube."),
        ("Danube", "The Danube is a river in Central Europe flowing to the Black Sea."),
        ("Paris", "Paris is the capital of France on the Seine."),
        ("Seine", "The Seine is a river in northern France."),
        ("Mount Everest", "Mount Everest is Earth's highest mountain above sea level."),
    ]
    import json

    path.write_text("".join(json.dumps({"title": t, "text": x}) + "\n" for t, x in rows))
    return path

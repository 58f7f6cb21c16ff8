"""The embedded model served by sounding's own llama.cpp server: N slots, continuous batching, on 127.0.0.1.

Two in-process llama.cpp models on two cores starve each other (their threads spin while they wait),
so a sweep that runs several questions at once batches them in one server instead: each question is a
request stream, the server decodes the streams in flight as one batch, and each slot keeps its last
prompt cached (``cache_prompt``), so a question's next call re-evaluates only what changed.

`LlamaServer` starts llama.cpp's own server (``scripts/build_llama_server.sh`` builds it from the
sources of the installed llama-cpp-python: the same engine as the embedded backend, compiled with the
same flags), waits for its health check and stops it. It never outlives the process that started it:
the kernel kills it when the thread that started it ends (``PR_SET_PDEATHSIG`` follows the thread: the
sweep starts it from its main thread, so in effect when the sweep's process dies), and ``stop`` (or
leaving the ``with`` block) terminates it. It binds 127.0.0.1 on a free port.

`ServedLlamaLLM` is the `LLM` over it: the HTTP backend, plus the server's lifetime, and each thread's
calls pinned to one slot (``id_slot``) so a question's prompts meet their own cached prefix.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from sounding.tools.llm.base import Completion, EngineGoneError, LLMError, LLMUnavailableError, Message
from sounding.tools.llm.openai_http import OpenAIHTTPLLM

PR_SET_PDEATHSIG = 1
BUILD_HINT = "scripts/build_llama_server.sh builds it (a few minutes; make test runs it)"


class ServerStartError(LLMUnavailableError):
    """llama.cpp's server is not built, or did not start and become healthy here: the embedded model can
    still run in process."""


def server_binary() -> Path:
    """Where the build script puts llama.cpp's server: beside this environment's Python."""
    return Path(sys.executable).parent / "llama-server"


def _die_with_parent() -> None:  # between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            # SIGKILL, not SIGTERM: the server has nothing to save, and its graceful shutdown was seen
            # to hang for hours after the sweep that started it had exited
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """llama.cpp's server for one GGUF with ``slots`` parallel sequences of ``n_ctx`` tokens each."""

    def __init__(
        self,
        model_path: Path,
        *,
        slots: int,
        n_ctx: int = 4096,
        threads: int = 2,
        alias: str = "served",
        binary: Path | None = None,
        start_timeout_s: float = 180.0,
    ) -> None:
        if slots < 1:
            raise ValueError(f"a server needs at least one slot, not {slots}")
        self.model_path = model_path
        self.slots = slots
        self.n_ctx = n_ctx
        self.threads = threads
        self.alias = alias
        self.binary = binary or server_binary()
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        # The context is split evenly between the slots, so each holds a question's n_ctx, as in process.
        return [
            str(self.binary), "-m", str(self.model_path), "--host", "127.0.0.1", "--port", str(self.port),
            "--parallel", str(self.slots), "-c", str(self.n_ctx * self.slots), "-t", str(self.threads),
            "-tb", str(self.threads), "--alias", self.alias, "--no-webui", "--flash-attn", "off", "--log-verbosity", "2",
        ]  # fmt: skip

    def start(self) -> str:
        """Start and wait until healthy; the base URL. `LLMUnavailableError` when it cannot run here."""
        if not self.binary.is_file():
            raise LLMUnavailableError(
                f"llama.cpp's server is not built ({self.binary} is missing): {BUILD_HINT}"
            )
        if not self.model_path.is_file():
            raise LLMUnavailableError(f"model file not found: {self.model_path}")
        self.port = free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        try:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise ServerStartError(f"cannot start {self.binary}: {exc}") from exc
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            status = self._proc.poll()
            if status is not None:
                tail = self._log_tail()
                self.stop()
                raise ServerStartError(f"llama.cpp's server exited at start (status {status}): {tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return self.base_url
            time.sleep(0.25)
        self.stop()
        raise LLMUnavailableError(
            f"llama.cpp's server did not become healthy within {self.start_timeout_s:g} s"
        )

    def _log_tail(self, lines: int = 5) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no output)"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def exit_report(self) -> str:
        """Why a server that was running is not: its exit status and last log lines."""
        status = self._proc.poll() if self._proc is not None else None
        return f"llama.cpp's server exited (status {status}): {self._log_tail()}"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServedLlamaLLM:
    """The `LLM` protocol over a `LlamaServer` this object starts and owns (``close`` stops it).

    The server's slots are laid out for the sweep: the last ``pinned`` slots hold one question each (a
    thread's calls always go to its slot, where its prompt prefix is cached); the others take the extra
    samples of ``n > 1`` calls, which llama.cpp's server runs as child slots that copy the parent's
    evaluated prompt (one prefill for all samples). The server hands children the lowest free slots
    first, so while enough sample slots exist no question's cached prefix is overwritten."""

    def __init__(
        self,
        server: LlamaServer,
        *,
        name: str,
        n_params: int | None,
        pinned: int | None = None,
        temperature: float = 0.0,
        seed: int = 0,
        timeout_s: float = 600.0,
    ) -> None:
        self._server = server
        self._pinned = min(pinned or server.slots, server.slots)
        base_url = server.start()
        try:
            self._http = OpenAIHTTPLLM(
                base_url,
                server.alias,
                structured_output="gbnf",  # constrained exactly as in process
                timeout_s=timeout_s,
                max_retries=1,
                temperature=temperature,
                seed=seed,
                n_params=n_params,
            )
        except BaseException:
            server.stop()
            raise
        self._name = name
        self._slot_of: dict[int, int] = {}
        self._lock = threading.Lock()
        # prompt tokens counted exactly as in process (the model's vocabulary alone, a few MB), so a
        # budget reserves, and stops, a served run as it does an embedded one
        from llama_cpp import Llama

        from sounding.tools.llm.llama_cpp import PromptCounter

        try:
            self._counter = PromptCounter(Llama(str(server.model_path), vocab_only=True, verbose=False))
        except (ValueError, RuntimeError) as exc:
            server.stop()
            raise LLMUnavailableError(f"cannot read the vocabulary of {server.model_path}: {exc}") from exc
        self._count_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def n_params(self) -> int | None:
        return self._http.n_params

    @property
    def slots(self) -> int:
        return self._server.slots

    @property
    def context_size(self) -> int:
        return self._server.n_ctx

    def prompt_token_bound(self, messages: list[Message]) -> int:
        with self._count_lock:
            return self._counter.bound(messages)

    def _slot(self) -> int:
        """This thread's slot: the sweep runs one question per thread, so a question stays on one slot."""
        ident = threading.get_ident()
        with self._lock:
            if ident not in self._slot_of:
                alive = {t.ident for t in threading.enumerate()}
                self._slot_of = {t: s for t, s in self._slot_of.items() if t in alive}  # ended threads
                used = set(self._slot_of.values())
                top = self.slots - 1
                pinned = [top - i for i in range(self._pinned)]
                free = [s for s in pinned if s not in used]
                self._slot_of[ident] = free[0] if free else pinned[len(self._slot_of) % len(pinned)]
            return self._slot_of[ident]

    def complete(self, messages: list[Message], **kwargs: Any) -> Completion:
        try:
            completion = self._http.complete(messages, id_slot=self._slot(), **kwargs)
        except LLMError as exc:
            if not self._server.running:  # not this question's failure: every later call would fail too
                raise EngineGoneError(self._server.exit_report()) from exc
            raise
        # The server counts the end-of-turn token it sampled as generated; llama-cpp-python does not.
        # Counted as in process, so a budget stops a served run where it stops an embedded one.
        choices = [
            c.model_copy(update={"completion_tokens": c.completion_tokens - 1})
            if c.finish_reason == "stop" and c.completion_tokens > 0
            else c
            for c in completion.samples()
        ]
        return Completion.of(choices, prompt_tokens=completion.prompt_tokens, model=self._name)

    def close(self) -> None:
        self._http.close()
        self._server.stop()

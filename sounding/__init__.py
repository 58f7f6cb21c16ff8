"""sounding: agentic deep research that scales at test time.

The public API is re-exported here so a newcomer needs one import::

    from sounding import load_settings, make_llm
    llm = make_llm(load_settings())
    print(llm.complete([{"role": "user", "content": "Say hi"}], max_tokens=8).text)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sounding.settings import Settings, load_settings
    from sounding.tools.llm import LLM, Completion, Message, make_llm

__all__ = ["LLM", "Completion", "Message", "Settings", "__version__", "load_settings", "make_llm"]

_EXPORTS = {
    "Settings": "sounding.settings",
    "load_settings": "sounding.settings",
    "LLM": "sounding.tools.llm",
    "Completion": "sounding.tools.llm",
    "Message": "sounding.tools.llm",
    "make_llm": "sounding.tools.llm",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import sounding.supervise` (the command's parent process, which only
    # waits for the CLI child) does not pay for pydantic-settings and the LLM backends (~0.4 s).
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sounding' has no attribute {name!r}")

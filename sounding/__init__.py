"""sounding: agentic deep research that scales at test time.

The public API is re-exported here so a newcomer needs one import::

    from sounding import load_settings, make_llm
    llm = make_llm(load_settings())
    print(llm.complete([{"role": "user", "content": "Say hi"}], max_tokens=8).text)
"""

from __future__ import annotations

__version__ = "0.1.0"

from sounding.settings import Settings, load_settings
from sounding.tools.llm import LLM, Completion, Message, make_llm

__all__ = ["LLM", "Completion", "Message", "Settings", "__version__", "load_settings", "make_llm"]

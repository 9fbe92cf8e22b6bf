"""Adapters that put tvcache under the RL frameworks' agent loops, one module per framework.

- :mod:`~tvcache.adapters.gym`: ``ToolEnv``, a Gymnasium environment whose actions are tool calls.
- :mod:`~tvcache.adapters.openai`: OpenAI-style ``tool_calls`` in, tool messages out.
- :mod:`~tvcache.adapters.skyrl`: any SkyRL-gym ``BaseTextEnv`` with its tools served by tvcache.
- :mod:`~tvcache.adapters.verl`: a verl ``BaseTool`` backed by the async client.
- :mod:`~tvcache.adapters.rllm`: an rLLM ``BaseEnv``-shaped environment.

All work on any session source (an in-process :class:`~tvcache.Engine` or a
:class:`~tvcache.client.Client`) and change nothing about the guarantee: a malformed action
becomes an observation that says what was wrong, and never reaches the cache.
"""

from __future__ import annotations

from tvcache.adapters._common import SessionSource, run_call
from tvcache.adapters.gym import Action, ToolEnv
from tvcache.adapters.openai import atool_messages, tool_messages
from tvcache.adapters.rllm import TvcacheToolEnv
from tvcache.adapters.skyrl import CachedTextEnv, skyrl_engine, skyrl_tools

# tvcache.adapters.verl is imported by name only: importing verl loads torch.
__all__ = [
    "Action",
    "CachedTextEnv",
    "SessionSource",
    "ToolEnv",
    "TvcacheToolEnv",
    "atool_messages",
    "run_call",
    "skyrl_engine",
    "skyrl_tools",
    "tool_messages",
]

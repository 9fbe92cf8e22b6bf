"""tvcache: a stateful tool-value cache with container forking for RL post-training.

Observations are keyed by the whole tool-call history since the environment's start; a
rollout that leaves the cached path resumes from a fork of the nearest checkpoint.
"""

from sandbox import (
    LocalTool,
    Observation,
    PythonTool,
    RootSpec,
    ShellTool,
    ToolCall,
    ToolCallError,
    ToolSandbox,
    ToolSpec,
    tool,
)
from snapshots import SnapshotError, SnapshotHandle, TvcacheError
from tvcache._engine import Engine, RootNotFoundError
from tvcache._factory import load_tools, open_engine
from tvcache._policy import (
    AlwaysSnapshot,
    CostAwarePolicy,
    EvictionStrategy,
    LeastRecentlyUsed,
    NeverSnapshot,
    SecondsSavedPerByte,
    SnapshotContext,
    SnapshotPolicy,
)
from tvcache._session import CallResult, Session, SessionClosedError
from tvcache._settings import Settings, StateAwareness
from tvcache._stats import EngineStats, RootStats
from tvcache._store import Store, StoreError
from tvcache.pool import PreforkPool

__version__ = "0.1.0"

__all__ = [
    "AlwaysSnapshot",
    "CallResult",
    "CostAwarePolicy",
    "Engine",
    "EngineStats",
    "EvictionStrategy",
    "LeastRecentlyUsed",
    "LocalTool",
    "NeverSnapshot",
    "Observation",
    "PreforkPool",
    "PythonTool",
    "RootNotFoundError",
    "RootSpec",
    "RootStats",
    "SecondsSavedPerByte",
    "Session",
    "SessionClosedError",
    "Settings",
    "ShellTool",
    "SnapshotContext",
    "SnapshotError",
    "SnapshotHandle",
    "SnapshotPolicy",
    "StateAwareness",
    "Store",
    "StoreError",
    "ToolCall",
    "ToolCallError",
    "ToolSandbox",
    "ToolSpec",
    "TvcacheError",
    "__version__",
    "load_tools",
    "open_engine",
    "tool",
]

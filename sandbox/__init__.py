"""Live environments: the Sandbox protocol, the tools that run inside one, the backends."""

from sandbox._protocol import Backend, DoctorCheck, ReconcileReport, Sandbox
from sandbox._tools import (
    BashTool,
    LocalTool,
    PythonTool,
    ShellState,
    ShellTool,
    SqliteTool,
    ToolContext,
    ToolRegistry,
    ToolSandbox,
    tool,
)
from sandbox._types import (
    JSON,
    TRUNCATION_MARKER,
    Observation,
    RootSpec,
    ToolCall,
    ToolCallError,
    ToolSpec,
    cap_output,
)
from sandbox.docker import DockerBackend, DockerBackendError, DockerSandbox
from sandbox.local import LocalBackend, LocalBackendError, LocalSandbox

__all__ = [
    "JSON",
    "TRUNCATION_MARKER",
    "Backend",
    "BashTool",
    "DockerBackend",
    "DockerBackendError",
    "DockerSandbox",
    "DoctorCheck",
    "LocalBackend",
    "LocalBackendError",
    "LocalSandbox",
    "LocalTool",
    "Observation",
    "PythonTool",
    "ReconcileReport",
    "RootSpec",
    "Sandbox",
    "ShellState",
    "ShellTool",
    "SqliteTool",
    "ToolCall",
    "ToolCallError",
    "ToolContext",
    "ToolRegistry",
    "ToolSandbox",
    "ToolSpec",
    "cap_output",
    "tool",
]

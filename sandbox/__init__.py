"""Live environments: the Sandbox protocol, the tools that run inside one, the backends."""

from sandbox._protocol import Backend, DoctorCheck, ReconcileReport, Sandbox
from sandbox._tools import LocalTool, ShellState, ToolContext, ToolRegistry
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
    "DockerBackend",
    "DockerBackendError",
    "DockerSandbox",
    "DoctorCheck",
    "LocalBackend",
    "LocalBackendError",
    "LocalSandbox",
    "LocalTool",
    "Observation",
    "ReconcileReport",
    "RootSpec",
    "Sandbox",
    "ShellState",
    "ToolCall",
    "ToolCallError",
    "ToolContext",
    "ToolRegistry",
    "ToolSpec",
    "cap_output",
]

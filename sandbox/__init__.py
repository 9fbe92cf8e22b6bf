"""Live environments: the Sandbox protocol, the tools that run inside one, the backends."""

from sandbox._protocol import Backend, DoctorCheck, ReconcileReport, Sandbox
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

__all__ = [
    "JSON",
    "TRUNCATION_MARKER",
    "Backend",
    "DoctorCheck",
    "Observation",
    "ReconcileReport",
    "RootSpec",
    "Sandbox",
    "ToolCall",
    "ToolCallError",
    "ToolSpec",
    "cap_output",
]

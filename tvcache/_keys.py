"""Canonical forms and content-addressed ids: equal histories give equal ids in every process."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from sandbox import JSON, RootSpec, ToolSpec

_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: JSON) -> str:
    """Sorted keys, no insignificant whitespace, UTF-8 kept as is. One encoder for all
    calls: ``json.dumps`` with options builds a new one each time (on every hit and miss)."""
    return _CANONICAL.encode(value)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def call_key(spec: ToolSpec, args: Mapping[str, JSON]) -> str:
    """The key of a call: tool name, tool version and the non-volatile args."""
    keyed = {name: value for name, value in args.items() if name not in spec.volatile}
    return _digest(canonical_json([spec.name, spec.version, keyed]))


def checked_call_key(spec: ToolSpec, args: object) -> str:
    """``call_key(spec, spec.validate(args))`` encoding the args once, not twice: the key's
    canonical form proves them JSON and UTF-8, so ``validate`` (and its clear error) runs
    only for what that cannot prove — volatile args — and for args that fail."""
    if (
        isinstance(args, dict)
        and all(type(name) is str for name in args)
        and all(name in args for name in spec.required)
        and not any(name in spec.volatile for name in args)
    ):
        try:
            return call_key(spec, args)
        except (TypeError, ValueError) as failed:
            spec.validate(args)  # raises the ToolCallError that says what is wrong
            raise failed  # JSON that validate accepts but no canonical form has (mixed keys)
    return call_key(spec, spec.validate(args))


def root_id(spec: RootSpec, identity: str) -> str:
    """A root is its spec plus what its template really contains."""
    return _digest(canonical_json([spec.to_dict(), identity]))


def child_id(parent_id: str, key: str) -> str:
    """A node's id is a hash of its whole history, so workers agree on it without talking."""
    return _digest(f"{parent_id}/{key}")

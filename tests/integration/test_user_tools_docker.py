"""The same user tools on the Docker backend: shell tools in the container's session shell,
Python tools by python3 inside the container (never on the host reading its files)."""

from __future__ import annotations

import json

import pytest
from docker_env import BackendFactory, sh, start
from tool_examples import make_tools

from sandbox import LocalBackend, ToolCall, ToolCallError, ToolSpec
from tvcache import PythonTool


def test_user_tools_run_inside_the_container(make_backend: BackendFactory) -> None:
    backend = make_backend(tools=make_tools())
    local = LocalBackend(backend.snapshot_dir.parent / "local" / "snapshots", tools=make_tools())
    assert dict(backend.tool_specs()) == dict(local.tool_specs())  # one declaration, same keys
    with start(backend) as box:
        sh(box, "mkdir -p /work && cd /work && printf 'needle\\nhay\\n' > a.txt")
        grep = box.run(ToolCall("grep", {"pattern": "needle"}))
        assert (grep.output, grep.exit_code) == ("./a.txt:1:needle\n", 0)  # the shell's cwd
        where = json.loads(box.run(ToolCall("where", {})).output)
        assert where["hostname"] == "sandbox"  # the container's, not this host's
        note = box.run(ToolCall("write_note", {"name": "n.txt", "text": "hi"}))
        assert note.exit_code == 0 and "n.txt" in note.output.split()
        assert sh(box, f"cat {where['root'].rstrip('/')}/n.txt").output == "hi"
        with pytest.raises(ToolCallError, match="unexpected keyword argument"):
            box.run(ToolCall("write_note", {"name": "x", "text": "y", "colour": "red"}))
        sh(box, "cd /tmp")  # the session shell's cwd, which a shell tool shares with bash
        assert box.run(ToolCall("grep", {"pattern": "needle"})).output == ""


def test_a_tool_defined_in_a_script_is_refused_with_a_hint(
    make_backend: BackendFactory,
) -> None:
    def local_only(env: object) -> str:
        return "never shipped"

    local_only.__module__ = "__main__"
    with pytest.raises(ToolCallError, match="importable module"):
        make_backend(tools=[PythonTool(ToolSpec("local_only"), local_only)])

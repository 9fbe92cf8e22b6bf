"""``tvcache serve --tools``: a server loads the user's tools and serves them to clients."""

from __future__ import annotations

import json
from pathlib import Path

from tvcache.client import Client
from tvcache.service import ServerProcess

TESTS = str(Path(__file__).resolve().parents[1])


def test_serve_loads_tools_and_serves_them(tmp_path: Path) -> None:
    template = tmp_path / "template"
    template.mkdir()
    (template / "a.txt").write_text("needle\n")
    tools = ("--tools", "tool_examples:make_tools", "--pool-size", "0")
    server = ServerProcess(tmp_path / "home", *tools, env={"PYTHONPATH": TESTS})
    client = Client(server.url)
    with server, client:
        with client.session("served", template=str(template)) as first:
            assert first.call("grep", pattern="needle").output == "./a.txt:1:needle\n"
            note = first.call("write_note", name="n", text="x", request_id="1")
            assert note.output == "exit 0\na.txt\nn\n"
            assert json.loads(first.call("where").output)["root"] == "/sandbox"
        with client.session("served", template=str(template)) as second:
            assert second.call("grep", pattern="needle").hit
            assert second.call("write_note", name="n", text="x", request_id="2").hit

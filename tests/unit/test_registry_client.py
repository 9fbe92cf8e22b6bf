"""What the real registry (tests/integration/test_registry*.py) cannot show: a bearer-token
challenge (Debian's registry has no token server), bad input refused with a clear error, and
layer tars that try to leave their directory."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import threading
from pathlib import Path

import httpx
import pytest

from snapshots import SnapshotError
from snapshots._layer_tar import tar_chunks, unpack
from snapshots.registry import BlobMissingError, Registry, RegistryError, from_env


def test_a_bearer_challenge_fetches_a_token_with_the_urls_credentials() -> None:
    seen: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        seen.append((request.url.path, auth))
        if request.url.host == "auth.example":
            assert auth == "Basic " + base64.b64encode(b"ann:s3cret").decode()
            assert request.url.params["scope"] == "repository:tvcache/snapshots:pull"
            return httpx.Response(200, json={"token": "T0K"})
        if auth != "Bearer T0K":
            challenge = (
                'Bearer realm="https://auth.example/token",service="reg",'
                'scope="repository:tvcache/snapshots:pull"'
            )
            return httpx.Response(401, headers={"www-authenticate": challenge})
        return httpx.Response(200, json={"tags": ["a", "b"]})

    registry = Registry("https://ann:s3cret@reg.example", transport=httpx.MockTransport(answer))
    assert registry.tags() == ["a", "b"]
    assert registry.tags() == ["a", "b"]  # the token is kept: no second challenge
    assert [path for path, _ in seen] == [
        "/v2/tvcache/snapshots/tags/list",
        "/token",
        "/v2/tvcache/snapshots/tags/list",
        "/v2/tvcache/snapshots/tags/list",
    ]


def test_basic_auth_comes_from_the_url_and_a_refusal_says_what_to_do() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") == "Basic " + base64.b64encode(b"u:p").decode():
            return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
        return httpx.Response(401)

    good = Registry("http://u:p@reg:5000", transport=httpx.MockTransport(answer))
    with pytest.raises(BlobMissingError):
        good.get_manifest("s1")
    bad = Registry("http://reg:5000", transport=httpx.MockTransport(answer))
    with pytest.raises(RegistryError, match="user:password@"):
        bad.get_manifest("s1")


@pytest.mark.parametrize(
    ("url", "repository", "says"),
    [
        ("ftp://reg", "tvcache/snapshots", "is not http"),
        ("http://reg:5000", "Upper/Case", "not a valid OCI name"),
    ],
)
def test_bad_configuration_is_refused_clearly(url: str, repository: str, says: str) -> None:
    with pytest.raises(RegistryError, match=says):
        Registry(url, repository)


def test_bad_references_never_reach_a_url() -> None:
    registry = Registry("http://reg", transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    with pytest.raises(RegistryError, match="not a sha256 digest"):
        registry.has_blob("sha256:../../etc")
    with pytest.raises(RegistryError, match="not a valid tag"):
        registry.get_manifest("../x")


def test_the_registry_comes_from_the_argument_else_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TVCACHE_REGISTRY", raising=False)
    assert from_env() is None
    monkeypatch.setenv("TVCACHE_REGISTRY", "127.0.0.1:5000")
    found = from_env()
    assert found is not None and found.url == "http://127.0.0.1:5000"
    chosen = from_env("https://other:443")
    assert chosen is not None and chosen.url == "https://other:443"


def _tar(path: Path, *entries: tarfile.TarInfo, body: bytes = b"x") -> Path:
    with tarfile.open(path, "w") as tar:
        for entry in entries:
            if entry.isreg():
                entry.size = len(body)
                tar.addfile(entry, io.BytesIO(body))
            else:
                tar.addfile(entry)
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    "entries",
    [
        [_entry("../escaped")],
        [_entry("/abs/escaped")],
        [_entry("d", tarfile.SYMTYPE, "../outside"), _entry("d/escaped")],
        [_entry("h", tarfile.LNKTYPE, "../outside/escaped")],
        [_entry("dev", tarfile.CHRTYPE)],
    ],
    ids=["dotdot", "absolute", "through-symlink", "hardlink-out", "device"],
)
def test_a_layer_tar_that_leaves_its_directory_is_refused(
    tmp_path: Path, entries: list[tarfile.TarInfo]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "escaped").write_text("host file")
    source = _tar(tmp_path / "evil.tar", *entries)
    (tmp_path / "layer").mkdir()
    with pytest.raises(SnapshotError, match="refused"):
        unpack(source, tmp_path / "layer" / "diff")
    assert (outside / "escaped").read_text() == "host file"
    assert sorted(p.name for p in outside.iterdir()) == ["escaped"]


def test_a_symlink_may_point_anywhere_inside_the_container(tmp_path: Path) -> None:
    """Container symlinks are absolute (``/usr/bin/python``): kept, never followed."""
    source = _tar(tmp_path / "ok.tar", _entry("py", tarfile.SYMTYPE, "/usr/bin/python3"))
    (tmp_path / "layer").mkdir()
    unpack(source, tmp_path / "layer" / "diff")
    assert (tmp_path / "layer" / "diff" / "py").readlink() == Path("/usr/bin/python3")
    assert json.dumps(sorted(p.name for p in (tmp_path / "layer" / "diff").iterdir())) == '["py"]'


def test_a_layer_tar_abandoned_half_way_stops_its_producer(tmp_path: Path) -> None:
    """An upload that fails after the first chunk must not leave a thread blocked forever on
    the rest of the tar (and the layer's files open)."""
    diff = tmp_path / "diff"
    diff.mkdir()
    for index in range(40):
        (diff / f"f{index}").write_bytes(bytes(64 * 1024))
    chunks = tar_chunks(diff, chunk=16 * 1024)
    assert len(next(chunks)) == 16 * 1024
    chunks.close()
    assert not [t for t in threading.enumerate() if t.name == "tvcache-layer-tar"]


def test_a_layer_tar_is_the_same_bytes_for_the_same_tree(tmp_path: Path) -> None:
    diff = tmp_path / "diff"
    (diff / "b" / "c").mkdir(parents=True)
    (diff / "a").write_text("a")
    (diff / "b" / "c" / "d").write_text("d")
    first, second = b"".join(tar_chunks(diff)), b"".join(tar_chunks(diff))
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert tar.getnames() == ["a", "b", "b/c", "b/c/d"]
        assert {m.uname for m in tar.getmembers()} == {""}

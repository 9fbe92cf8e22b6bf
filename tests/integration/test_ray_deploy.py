"""``tvcache.ray.deploy`` on a real local Ray cluster of two nodes (``ray.cluster_utils``),
sharing a real PostgreSQL store: one server per node, clients route and hit across them.

Ray is not installed by .ci/run yet (docs/cluster.md): without it this module skips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tvcache.ray import deploy

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = pytest.mark.postgres


@pytest.fixture
def ray_cluster() -> Iterator[Any]:
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1, resources={"tvcache": 1})
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_one_server_per_node_and_routing_across_them(
    ray_cluster: Any, postgres_url: str, tmp_path: Path
) -> None:
    template = tmp_path / "template"
    template.mkdir()
    deployment = deploy(postgres_url, token="s3cret", serve_args=("--log-level", "warning"))
    try:
        assert len(deployment.urls) == len(set(deployment.urls)) == 2
        with deployment.client() as cluster:
            servers = set()
            for task in [f"t{i}" for i in range(8)]:
                for expect_hit in (False, True):
                    with cluster.session(task, template=str(template)) as session:
                        result = session.call("bash", command=f"echo {task}")
                        assert (result.hit, result.output) == (expect_hit, f"{task}\n")
                        servers.add(session.server)
            assert servers == set(deployment.urls)
    finally:
        deployment.shutdown()
    only = deploy(postgres_url, token="s3cret", resource="tvcache")
    try:
        assert len(only.urls) == 1
    finally:
        only.shutdown()

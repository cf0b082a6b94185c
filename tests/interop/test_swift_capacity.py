"""Capacity and usage refreshed from real clusters: spill-over placement follows what
the clusters really hold. Two small clusters, each on a tmpfs device of its own, so
Swift's recon reports each cluster's own size and use."""

import time

import pytest
import requests

import peers
from test_swift_federation import conn, uniq, where

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def small(workdir):
    cs = peers.start_clusters(workdir / "small", ["small-a", "small-b"], device_mib=64)
    yield {c.name: c for c in cs}
    for c in cs:
        c.teardown()


@pytest.fixture(scope="module")
def usage_proxy(workdir, small, proxy_binary):
    p = peers.FederationProxy(
        workdir / "usage-proxy", list(small.values()),
        policy_toml='kind = "first-of"\npolicies = [{ kind = "pin" }, { kind = "most-free" }]\n',
        recon=True, extra_toml="usage_interval_seconds = 0.5")
    p.start(proxy_binary)
    yield p
    p.stop()


def clusters_info(proxy):
    info = requests.get(f"{proxy.endpoint}/info", timeout=10).json()
    return {c["id"]: c for c in info["federation"]["clusters"]}


def wait_for(proxy, predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = clusters_info(proxy)
        if predicate(seen):
            return seen
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}: {seen}")


def put_mib(c, container, name, mib):
    c.put_object(container, name, b"\x5a" * (mib * MIB))


def test_capacity_comes_from_the_clusters(usage_proxy):
    seen = wait_for(usage_proxy,
                    lambda s: all(c["capacity_bytes"] == 64 * MIB for c in s.values()),
                    "the tmpfs size to replace the configured 1 TB")
    for c in seen.values():
        assert 0 < c["used_bytes"] < 8 * MIB, c


def fuller(proxy, full, other, what):
    """Waits until the proxy sees `full` using 12 MiB more than `other`."""
    wait_for(proxy, lambda s: s[full]["used_bytes"] > s[other]["used_bytes"] + 12 * MIB, what)


def new_containers_go_to(fed, small, cluster, count):
    names = [uniq("new") for _ in range(count)]
    for n in names:
        fed.put_container(n)
        assert where(small, n) == [cluster], n
    return names


def test_spill_over_follows_real_usage(small, usage_proxy):
    fed = conn(usage_proxy.auth_url)
    a, b = uniq("fill-a"), uniq("fill-b")
    fed.put_container(a, headers={"X-Container-Attr-Cluster": "small-a"})
    fed.put_container(b, headers={"X-Container-Attr-Cluster": "small-b"})
    put_mib(fed, a, "blob", 16)
    fuller(usage_proxy, "small-a", "small-b", "16 MiB on small-a to show")
    made = new_containers_go_to(fed, small, "small-b", 3)
    put_mib(fed, b, "blob", 32)
    fuller(usage_proxy, "small-b", "small-a", "32 MiB on small-b to show")
    made += new_containers_go_to(fed, small, "small-a", 3)
    # Freeing space is seen too.
    fed.delete_object(b, "blob")
    fuller(usage_proxy, "small-a", "small-b", "the deletion on small-b to show")
    made += new_containers_go_to(fed, small, "small-b", 1)
    fed.delete_object(a, "blob")
    for name in [a, b, *made]:
        fed.delete_container(name)

"""The Swift-backed attribute store, against a real Swift cluster: the shared
conformance suite, and two proxy processes sharing one registry."""

import os
import random
import time
import subprocess
import threading
import uuid

import pytest
import requests
from swiftclient import client as swc

import peers
from test_swift_federation import USER, KEY, conn, where


def registry_toml(cluster, container, settle_ms=200):
    return (f'{{ kind = "swift", endpoint = "{cluster.endpoint}", user = "{peers.REGISTRY_USER}", '
            f'key = "{peers.REGISTRY_KEY}", container = "{container}", settle_ms = {settle_ms} }}')


def test_swift_store_passes_the_conformance_suite(clusters):
    east = clusters["east"]
    env = {**os.environ,
           "STACKFED_REGISTRY_ENDPOINT": east.endpoint,
           "STACKFED_REGISTRY_USER": peers.REGISTRY_USER,
           "STACKFED_REGISTRY_KEY": peers.REGISTRY_KEY}
    run = subprocess.run(
        ["cargo", "test", "--quiet", "--locked", "-p", "swift-proto", "--test", "swift_registry",
         "--", "--ignored", "--exact", "swift_store_passes_the_conformance_suite"],
        cwd=peers.ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "1 passed" in run.stdout, run.stdout[-2000:]
    # The records really are objects in the registry container on the cluster.
    reg = swc.Connection(authurl=east.auth_url, user=peers.REGISTRY_USER, key=peers.REGISTRY_KEY,
                         retries=0)
    names = [c["name"] for c in reg.get_account(full_listing=True)[1]]
    assert any(n.startswith("conformance-") for n in names), names


@pytest.fixture(scope="module")
def twin_proxies(workdir, clusters, proxy_binary):
    """Two proxy processes sharing one Swift-backed store on east. Their labels are
    crossed, so for a container asking for tier=a, proxy A would choose east and
    proxy B west: every race is a real disagreement the store has to settle."""
    store = registry_toml(clusters["east"], "federation-registry")
    crossed = {"a": {"east": "a", "west": "b"}, "b": {"east": "b", "west": "a"}}
    ps = []
    try:
        for name in ("a", "b"):
            p = peers.FederationProxy(
                workdir / f"twin-{name}", list(clusters.values()),
                policy_toml='kind = "service-level"\nthen = { kind = "most-free" }\n',
                labels={c: {"tier": v} for c, v in crossed[name].items()},
                store=store)
            p.start(proxy_binary)
            ps.append(p)
        yield ps
    finally:
        for p in ps:
            p.stop()


def test_two_proxies_racing_on_one_name_always_agree(clusters, twin_proxies):
    a, b = twin_proxies
    conns = [conn(p.auth_url) for p in (a, b)]
    rounds = 20
    names = [f"race-{uuid.uuid4().hex[:8]}-{i}" for i in range(rounds)]
    for name in names:
        barrier = threading.Barrier(2)
        errors = []

        def create(c):
            try:
                barrier.wait(timeout=10)
                time.sleep(random.uniform(0, 0.02))  # either side may get there first
                c.put_container(name, headers={"X-Container-Attr-Tier": "a"})
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=create, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, (name, errors)
    winners = {}
    for name in names:
        holders = where(clusters, name)
        assert len(holders) == 1, f"{name} is on {holders}: an orphan container"
        seen = {c.head_container(name)["x-container-attr-cluster"] for c in conns}
        assert seen == set(holders), (name, seen, holders)
        winners[name] = holders[0]
    # Data written through one proxy is read through the other.
    conns[0].put_object(names[0], "hello.txt", b"from proxy a")
    assert conns[1].get_object(names[0], "hello.txt")[1] == b"from proxy a"
    print("winners per cluster:", {c: list(winners.values()).count(c) for c in clusters})
    conns[1].delete_object(names[0], "hello.txt")
    for name in names:
        conns[0].delete_container(name)
        assert where(clusters, name) == []
    # A name deleted through one proxy can be created afresh through the other.
    conns[1].put_container(names[1], headers={"X-Container-Attr-Tier": "a"})
    assert where(clusters, names[1]) == ["west"]
    conns[1].delete_container(names[1])


def test_registry_outage_is_a_clear_503_and_leaves_no_container(clusters, twin_proxies):
    a, _ = twin_proxies
    url, token = conn(a.auth_url).get_auth()
    east = clusters["east"]
    name = f"reg-{uuid.uuid4().hex[:8]}"
    east.stop()
    try:
        # Proxy A would place tier=b on west, which is up; the registry (on east) is not.
        r = requests.put(f"{url}/{name}", headers={"X-Auth-Token": token, "X-Container-Attr-Tier": "b"},
                         timeout=30)
        assert r.status_code == 503, (r.status_code, r.text)
        assert "store" in r.text.lower() or "registry" in r.text.lower(), r.text
        west = conn(clusters["west"].auth_url)
        assert name not in [c["name"] for c in west.get_account(full_listing=True)[1]]
    finally:
        east.restart()
    peers.wait_http(f"{east.endpoint}/healthcheck", timeout=60)
    c = conn(a.auth_url)
    c.put_container(name, headers={"X-Container-Attr-Tier": "b"})
    assert where(clusters, name) == ["west"]
    assert conn(twin_proxies[1].auth_url).head_container(name)["x-container-attr-cluster"] == "west"
    c.delete_container(name)

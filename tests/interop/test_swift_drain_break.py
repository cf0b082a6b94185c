"""Trying to break restart-safe drains (issue 15), against two real Swift clusters.

Each test runs its own proxy (its own SQLite attribute store, so no other module's drains
or containers are in its way) and checks every claim on the clusters directly: a drain
survives kill -9 at other points than test_swift_migration's, two drains of one cluster
are one, a drain towards the only other cluster while that one drains is refused, the
drain API answers unknown and malformed ids with a 4xx, and the cluster takes new
containers again once the drain is over."""

import contextlib
import json
import os
import signal
import threading
import time
import uuid

import pytest
import requests
from swiftclient.exceptions import ClientException

import peers
from test_swift_migration import OPERATOR, OPERATOR_KEY, admin_token, conn, migration_toml

USER, KEY, ACCOUNT = "test2:tester2", "testing2", "AUTH_test2"


@pytest.fixture
def dproxy(request, workdir, clusters, proxy_binary):
    p = peers.FederationProxy(workdir / f"drain-break-{request.node.name}-{uuid.uuid4().hex[:4]}",
                              list(clusters.values()), extra_toml=migration_toml())
    p.start(proxy_binary)
    yield p
    p.stop()


def drains_api(proxy, method, path="", **kw):
    return requests.request(method, f"{proxy.endpoint}/federation/v1/drains{path}",
                            headers={"X-Auth-Token": admin_token(proxy)}, timeout=30, **kw)


def post_drain(proxy, cluster="east", concurrency=2, account=ACCOUNT):
    return drains_api(proxy, "POST",
                      json={"account": account, "cluster": cluster, "concurrency": concurrency})


def drain_state(proxy, did):
    r = drains_api(proxy, "GET", f"/{did}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_drain_over(proxy, did, timeout=60):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = drain_state(proxy, did)
            if last["state"] != "running":
                return last
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"drain {did} still running: {json.dumps(last, indent=1)}\n{proxy.log()}")


def populate(proxy, names, cluster="east", objects=2):
    """Containers pinned to `cluster` with a few objects each; {(container, object): etag}."""
    fed = conn(proxy.auth_url, USER, KEY)
    want = {}
    for n in names:
        fed.put_container(n, headers={"X-Container-Attr-Cluster": cluster})
        for i in range(objects):
            want[(n, f"o{i}")] = fed.put_object(n, f"o{i}", os.urandom(5_000 + i * 3_001))
    return want


def direct(clusters, name):
    return {c: conn(clusters[c].auth_url, USER, KEY) for c in ("east", "west")}[name]


def on_cluster(clusters, cluster, names):
    _, listing = direct(clusters, cluster).get_account(full_listing=True)
    return {c["name"] for c in listing} & set(names)


def migrations_of(proxy, names):
    r = requests.get(f"{proxy.endpoint}/federation/v1/migrations",
                     headers={"X-Auth-Token": admin_token(proxy)}, timeout=10)
    assert r.status_code == 200, r.text
    return [m["entry"] for m in r.json()["migrations"]
            if m["entry"]["account"] == ACCOUNT and set(m["entry"]["containers"]) & set(names)]


def assert_drained(proxy, clusters, want, to="west", frm="east"):
    """Every container on `to` only, with every object and its ETag, through the proxy
    and on the cluster directly; exactly one done migration per container."""
    names = sorted({c for c, _ in want})
    fed = conn(proxy.auth_url, USER, KEY)
    dest, src = direct(clusters, to), direct(clusters, frm)
    for n in names:
        assert fed.head_container(n)["x-container-attr-cluster"] == to, n
        listed = {o["name"]: o["hash"] for o in dest.get_container(n, full_listing=True)[1]}
        assert listed == {o: e for (c, o), e in want.items() if c == n}, n
        with pytest.raises(ClientException) as e:
            src.head_container(n)
        assert e.value.http_status == 404, n
    entries = migrations_of(proxy, names)
    assert sorted(c for e in entries for c in e["containers"]) == names, entries
    assert all(e["state"] == "done" for e in entries), entries


def kill9_and_restart(proxy, binary):
    proxy.proc.stop(sig=signal.SIGKILL)
    proxy.proc = None
    proxy.start(binary)


def test_drain_api_refuses_bad_requests_and_ids(dproxy):
    """Unknown and malformed drain ids answer 404 (JSON), never 5xx; bad bodies 400; an
    unknown cluster 409; nothing is saved for a refused drain."""
    for did in ("d0-0000", "nope", "x" * 300, "%00", "..", "a%2Fb", "%ff%fe", "d%20x"):
        r = drains_api(dproxy, "GET", f"/{did}")
        assert r.status_code == 404, (did, r.status_code, r.text)
        assert r.json()["error"], r.text
    r = requests.get(f"{dproxy.endpoint}/federation/v1/drains/d1", timeout=10)
    assert r.status_code in (401, 403), r.text
    for body in (b"{", b"[]", b'{"account": "AUTH_test2"}', b'{"cluster": "east"}',
                 b'{"account": "", "cluster": "east"}', b'{"account": "AUTH_test2", "cluster": ""}',
                 b'{"account": "AUTH_test2", "cluster": "east", "concurrency": 0}',
                 b'{"account": "AUTH_test2", "cluster": "east", "concurrency": 65}',
                 b'{"account": "AUTH_test2", "cluster": "east", "concurrency": -1}',
                 b'{"account": "AUTH_test2", "cluster": "east", "concurrency": "2"}'):
        r = drains_api(dproxy, "POST", data=body)
        assert r.status_code == 400, (body, r.status_code, r.text)
    r = post_drain(dproxy, cluster="north")
    assert r.status_code == 409, r.text
    # A method the path does not answer: 405 naming those it does, in JSON.
    for method, path, allow in (("PUT", "", "GET, POST"), ("DELETE", "", "GET, POST"),
                                ("PUT", "/d1-x", "GET"), ("POST", "/d1-x", "GET")):
        r = drains_api(dproxy, method, path, json={})
        assert r.status_code == 405, (method, path, r.status_code, r.text)
        assert r.headers["Allow"] == allow and r.json()["error"], (method, path, r.headers)
    assert drains_api(dproxy, "GET").json() == {"drains": []}


def test_two_drains_of_one_cluster_are_one(dproxy, clusters):
    """A second drain of the same (account, cluster) while the first runs is refused with
    409 naming the running one; every container moves once."""
    tag = uuid.uuid4().hex[:6]
    want = populate(dproxy, [f"tw-{tag}-{i}" for i in range(4)])
    r1 = post_drain(dproxy, concurrency=1)
    assert r1.status_code == 202, r1.text
    r2 = post_drain(dproxy, concurrency=1)
    assert r2.status_code == 409, r2.text
    assert r1.json()["id"] in r2.text, r2.text
    done = wait_drain_over(dproxy, r1.json()["id"])
    assert done["state"] == "done", done
    assert [d["id"] for d in drains_api(dproxy, "GET").json()["drains"]] == [r1.json()["id"]]
    assert_drained(dproxy, clusters, want)
    # Once it is over, the cluster may be drained again (of nothing: done at once).
    r3 = post_drain(dproxy)
    assert r3.status_code == 202, r3.text
    assert r3.json()["migrations"] == []
    assert wait_drain_over(dproxy, r3.json()["id"])["state"] == "done"


def test_drain_towards_a_draining_cluster_is_refused(dproxy, clusters):
    """With two clusters, draining west while east drains (east's containers go to west)
    would move them back and forth: the second drain is refused (409), the first ends
    done, and nothing moved twice."""
    tag = uuid.uuid4().hex[:6]
    want = populate(dproxy, [f"bo-{tag}-{i}" for i in range(3)])
    west_names = [f"bw-{tag}-{i}" for i in range(2)]
    west_want = populate(dproxy, west_names, cluster="west")
    r1 = post_drain(dproxy, "east", concurrency=1)
    assert r1.status_code == 202, r1.text
    r2 = post_drain(dproxy, "west", concurrency=1)
    assert r2.status_code == 409, r2.text
    done = wait_drain_over(dproxy, r1.json()["id"])
    assert done["state"] == "done", done
    assert_drained(dproxy, clusters, want)
    # West's own containers never moved.
    assert on_cluster(clusters, "west", west_names) == set(west_names)
    assert migrations_of(dproxy, west_names) == []
    assert len(west_want) == 4


def test_kill9_right_after_the_202(dproxy, clusters, proxy_binary):
    """kill -9 as soon as the drain's 202 is back (moves at most just started): the
    restarted proxy resumes it and it ends done, one migration per container."""
    tag = uuid.uuid4().hex[:6]
    want = populate(dproxy, [f"ka-{tag}-{i}" for i in range(4)])
    r = post_drain(dproxy, concurrency=2)
    assert r.status_code == 202, r.text
    kill9_and_restart(dproxy, proxy_binary)
    # The saved drain, resumed or not yet, is the one drain of east: a new one is refused.
    again = post_drain(dproxy)
    assert again.status_code == 409 and r.json()["id"] in again.text, again.text
    done = wait_drain_over(dproxy, r.json()["id"])
    assert done["state"] == "done", json.dumps(done, indent=1) + dproxy.log()
    assert_drained(dproxy, clusters, want)
    assert sorted(m["container"] for m in done["moves"]) == sorted({c for c, _ in want}), done


def test_kill9_once_the_cluster_is_empty(dproxy, clusters, proxy_binary):
    """kill -9 once every move is over on the clusters (east empty) but the drain may
    not have saved `done` yet: the restarted proxy ends it done with every move's
    migration, and no container moves again."""
    tag = uuid.uuid4().hex[:6]
    names = [f"ke-{tag}-{i}" for i in range(3)]
    want = populate(dproxy, names)
    r = post_drain(dproxy, concurrency=3)
    assert r.status_code == 202, r.text
    deadline = time.time() + 60
    while time.time() < deadline and on_cluster(clusters, "east", names):
        time.sleep(0.1)
    assert not on_cluster(clusters, "east", names)
    kill9_and_restart(dproxy, proxy_binary)
    done = wait_drain_over(dproxy, r.json()["id"])
    assert done["state"] == "done", json.dumps(done, indent=1) + dproxy.log()
    assert all(m["phase"] == "done" and m["migration"] for m in done["moves"]), done
    assert_drained(dproxy, clusters, want)


def test_cancelled_move_of_a_drain(dproxy, clusters):
    """A move of a drain cancelled by the operator (by its planned id) is rolled back;
    the drain's next round moves the container again (the drain's promise: the cluster
    ends empty) and ends done; no object lost."""
    tag = uuid.uuid4().hex[:6]
    names = [f"cm-{tag}-{i}" for i in range(2)]
    fed = conn(dproxy.auth_url, USER, KEY)
    want = populate(dproxy, names[:1])
    want.update(populate(dproxy, names[1:], objects=60))
    r = post_drain(dproxy, concurrency=1)
    assert r.status_code == 202, r.text
    planned = r.json()["migrations"]
    # The second move (60 objects) is cancelled once it started.
    deadline = time.time() + 30
    while time.time() < deadline:
        c = requests.delete(f"{dproxy.endpoint}/federation/v1/migrations/{planned[-1]}",
                            headers={"X-Auth-Token": admin_token(dproxy)}, timeout=10)
        # 409 "not started yet" while queued (nothing to cancel yet).
        if not (c.status_code == 409 and "not started" in c.text):
            break
        time.sleep(0.05)
    assert c.status_code in (202, 409), c.text
    cancelled = c.status_code == 202
    done = wait_drain_over(dproxy, r.json()["id"])
    assert done["state"] == "done", json.dumps(done, indent=1) + dproxy.log()
    if cancelled:  # a second move of the same container, done
        phases = [m["phase"] for m in done["moves"] if m["container"] == names[1]]
        assert phases == ["cancelled", "done"], done["moves"]
    assert not on_cluster(clusters, "east", names)
    for n in names:
        assert fed.head_container(n)["x-container-attr-cluster"] == "west"
        listed = {o["name"]: o["hash"]
                  for o in direct(clusters, "west").get_container(n, full_listing=True)[1]}
        assert listed == {o: e for (c, o), e in want.items() if c == n}, n


@contextlib.contextmanager
def two_proxies_sharing_a_store(base, clusters, proxy_binary):
    """Two proxies with [migration] over one SQLite attribute store file, started;
    stopped on leaving."""
    base.mkdir(parents=True)
    store = f'{{ kind = "sqlite", path = "{base / "shared.db"}" }}'
    proxies = [peers.FederationProxy(base / f"p{i}", list(clusters.values()), store=store,
                                     extra_toml=migration_toml()) for i in range(2)]
    try:
        for p in proxies:
            p.start(proxy_binary)
        yield proxies
    finally:
        for p in proxies:
            p.stop()


def test_two_proxies_sharing_a_store_asked_at_once_start_one_drain(workdir, clusters, proxy_binary):
    """Two proxies over one SQLite attribute store file, each asked to drain the same
    (account, cluster) at the same instant: starting a drain is a compare-and-set on the
    store, so one answers 202 and the other 409 naming the winner's drain; both list that
    one drain only, and every container moves once. Three rounds."""
    with two_proxies_sharing_a_store(workdir / f"drain-two-{uuid.uuid4().hex[:4]}", clusters,
                                     proxy_binary) as proxies:
        tokens = [admin_token(p) for p in proxies]
        for rnd in range(3):
            tag = uuid.uuid4().hex[:6]
            want = populate(proxies[0], [f"tp-{tag}-{i}" for i in range(3)])
            barrier = threading.Barrier(2)
            answers = [None, None]

            def fire(i):
                barrier.wait()
                answers[i] = requests.post(
                    f"{proxies[i].endpoint}/federation/v1/drains",
                    headers={"X-Auth-Token": tokens[i]}, timeout=30,
                    json={"account": ACCOUNT, "cluster": "east", "concurrency": 2})

            threads = [threading.Thread(target=fire, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            codes = sorted(r.status_code for r in answers)
            assert codes == [202, 409], (rnd, [(r.status_code, r.text) for r in answers])
            won = next(i for i, r in enumerate(answers) if r.status_code == 202)
            did = answers[won].json()["id"]
            assert did in answers[1 - won].json()["error"], answers[1 - won].text
            done = wait_drain_over(proxies[won], did)
            assert done["state"] == "done", done
            for p in proxies:
                running = [d["id"] for d in drains_api(p, "GET").json()["drains"]
                           if d["state"] == "running"]
                assert running == [], (rnd, running)
            assert_drained(proxies[won], clusters, want)
            time.sleep(1.5)  # the other proxy's resume loop sees the drain over
        # One drain per round was ever saved, as both proxies see it.
        for p in proxies:
            assert len(drains_api(p, "GET").json()["drains"]) == 3, p.log()


def test_cluster_takes_new_containers_after_the_drain(dproxy, clusters, proxy_binary):
    """The no-new-placement guard ends with the drain: afterwards (and after a restart)
    new containers of the account are placed on the drained cluster again."""
    tag = uuid.uuid4().hex[:6]
    populate(dproxy, [f"ng-{tag}-0"])
    r = post_drain(dproxy)
    assert r.status_code == 202, r.text
    assert wait_drain_over(dproxy, r.json()["id"])["state"] == "done"
    time.sleep(1.5)  # a resume loop's look
    for attempt in ("after the drain", "after a restart"):
        fed = conn(dproxy.auth_url, USER, KEY)
        fresh = [f"ng-{tag}-{attempt[:5]}-{i}" for i in range(16)]
        for n in fresh:
            fed.put_container(n)
        placed = {fed.head_container(n)["x-container-attr-cluster"] for n in fresh}
        assert "east" in placed, (attempt, placed)
        dproxy.stop()
        dproxy.start(proxy_binary)
        time.sleep(1.5)


def test_drain_resumed_without_its_cluster_in_the_config(dproxy, clusters, proxy_binary):
    """A drain killed mid-copy, and the proxy restarted with a configuration that no
    longer names the drained cluster: the drain stops with a reason naming the cluster
    (no hang, no crash) and the proxy keeps serving every object from where its record
    says; the failed migration is rolled back (marks removed, no partial copy left on
    the destination). With the cluster configured again, a new drain of it moves
    everything and ends done."""
    tag = uuid.uuid4().hex[:6]
    names = [f"rc-{tag}-{i}" for i in range(2)]
    want = populate(dproxy, names, objects=40)
    r = post_drain(dproxy, concurrency=1)
    assert r.status_code == 202, r.text
    deadline = time.time() + 30
    while time.time() < deadline and not on_cluster(clusters, "west", names):
        time.sleep(0.05)
    dproxy.proc.stop(sig=signal.SIGKILL)
    dproxy.proc = None
    dproxy.clusters = [clusters["west"]]
    dproxy.start(proxy_binary)
    over = wait_drain_over(dproxy, r.json()["id"], timeout=30)
    assert over["state"] == "stopped", json.dumps(over, indent=1) + dproxy.log()
    assert "east" in (over["reason"] or ""), over
    assert requests.get(f"{dproxy.endpoint}/healthcheck", timeout=5).status_code == 200
    # Nothing lost: every container whole on east, where its record still says; the
    # failed migration rolled back what it could: no partial copy left on west.
    for n in names:
        _, listing = direct(clusters, "east").get_container(n, full_listing=True)
        assert len(listing) == 40, n
    assert not on_cluster(clusters, "west", names), dproxy.log()
    # East configured again, a new drain: the container whose migration failed for the
    # missing cluster was rolled back (its marks removed), so the drain moves it too.
    dproxy.stop()
    dproxy.clusters = list(clusters.values())
    dproxy.start(proxy_binary)
    again = post_drain(dproxy, concurrency=2)
    assert again.status_code == 202, again.text
    over = wait_drain_over(dproxy, again.json()["id"])
    fed = conn(dproxy.auth_url, USER, KEY)
    for n in names:
        where = fed.head_container(n)["x-container-attr-cluster"]
        listed = {o["name"]: o["hash"]
                  for o in direct(clusters, where).get_container(n, full_listing=True)[1]}
        assert listed == {o: e for (c, o), e in want.items() if c == n}, n
    assert not on_cluster(clusters, "east", names)
    assert over["state"] == "done", json.dumps(over, indent=1)


def test_drain_when_the_only_other_cluster_is_full(workdir, clusters, proxy_binary):
    """The only other cluster is full (as configured): the drain does not hang and does
    not overfill it; it ends `stopped` with a reason, its containers still on east with
    every object."""
    p = peers.FederationProxy(workdir / f"drain-full-{uuid.uuid4().hex[:4]}",
                              list(clusters.values()), extra_toml=migration_toml(),
                              usage={"west": (10_000_000, 10_000_000)})
    p.start(proxy_binary)
    try:
        tag = uuid.uuid4().hex[:6]
        names = [f"fu-{tag}-{i}" for i in range(2)]
        populate(p, names)
        r = post_drain(p)
        if r.status_code == 409:  # refused up front: as good
            assert "west" in r.text or "cluster" in r.text, r.text
        else:
            assert r.status_code == 202, r.text
            over = wait_drain_over(p, r.json()["id"], timeout=45)
            assert over["state"] == "stopped", json.dumps(over, indent=1) + p.log()
            # The reason says why: nowhere to go.
            assert "no cluster to move to" in over["reason"], over
            assert all(m["phase"] == "not-started" and m["error"] for m in over["moves"]), over
        assert on_cluster(clusters, "east", names) == set(names)
        assert not on_cluster(clusters, "west", names)
    finally:
        p.stop()


def test_a_proxy_without_migration_says_the_admin_api_is_not_enabled(workdir, clusters, proxy_binary):
    """A proxy without [migration] sharing the store with one that has it: its admin paths
    answer 501 in the admin API's JSON saying migration is not enabled here (it has no
    operator credentials to open the API with), never a Swift error; the drains saved in
    the shared store are listed by the proxy with [migration]."""
    base = workdir / f"drain-off-{uuid.uuid4().hex[:4]}"
    base.mkdir(parents=True)
    store = f'{{ kind = "sqlite", path = "{base / "shared.db"}" }}'
    on = peers.FederationProxy(base / "on", list(clusters.values()), store=store,
                               extra_toml=migration_toml())
    off = peers.FederationProxy(base / "off", list(clusters.values()), store=store)
    try:
        on.start(proxy_binary)
        off.start(proxy_binary)
        r = post_drain(on, cluster="east")
        assert r.status_code == 202, r.text
        did = r.json()["id"]
        assert wait_drain_over(on, did)["state"] == "done"
        assert [d["id"] for d in drains_api(on, "GET").json()["drains"]] == [did]
        for method, path in (("GET", "/federation/v1/drains"), ("GET", f"/federation/v1/drains/{did}"),
                             ("GET", "/federation/v1/auth"), ("POST", "/federation/v1/drains")):
            r = requests.request(method, f"{off.endpoint}{path}", timeout=10,
                                 headers={"X-Auth-User": OPERATOR, "X-Auth-Key": OPERATOR_KEY})
            assert r.status_code == 501, (method, path, r.status_code, r.text)
            assert r.headers["Content-Type"] == "application/json", r.headers
            assert "[migration]" in r.json()["error"], r.text
        # Swift's paths are served as before.
        assert requests.get(f"{off.endpoint}/healthcheck", timeout=10).status_code == 200
    finally:
        off.stop()
        on.stop()


def test_an_operator_token_works_on_every_proxy_sharing_the_store(workdir, clusters, proxy_binary):
    """Behind a load balancer the operator logs in at one proxy and is sent to another:
    the token works on every proxy with the same operator, and a token altered in any
    way is refused."""
    with two_proxies_sharing_a_store(workdir / f"token-two-{uuid.uuid4().hex[:4]}", clusters,
                                     proxy_binary) as proxies:
        token = admin_token(proxies[0])
        for p in proxies:
            r = requests.get(f"{p.endpoint}/federation/v1/drains", headers={"X-Auth-Token": token})
            assert r.status_code == 200, (p.endpoint, r.status_code, r.text)
        flipped = token[:-1] + ("0" if token[-1] != "0" else "1")
        for bad in (flipped, token + "0", token[:-2], "FED_tk", "", token.replace("FED_tk", "FED_tk9")):
            r = requests.get(f"{proxies[1].endpoint}/federation/v1/drains", headers={"X-Auth-Token": bad})
            assert r.status_code == 401, (bad, r.status_code)

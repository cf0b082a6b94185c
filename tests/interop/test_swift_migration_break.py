"""Live container migration (issue 15), tried by a newcomer: hostile admin input,
concurrent duplicate requests, odd names and content, against two real Swift clusters.

Shares the module-scoped migration proxy of test_swift_migration.py (its fixture and
helpers, imported); every expected value is what a real cluster answers directly."""

import json
import threading
import time

import pytest
import requests
from swiftclient.exceptions import ClientException

from test_swift_migration import (  # noqa: F401 (mproxy is a fixture)
    admin_token,
    conn,
    direct_objects,
    fill_container,
    mproxy,
    uniq,
    wait_done,
)


def post_move(proxy, body, token=None):
    return requests.post(f"{proxy.endpoint}/federation/v1/migrations",
                         headers={"X-Auth-Token": token or admin_token(proxy)},
                         json=body, timeout=30)


def journal_for(proxy, name):
    r = requests.get(f"{proxy.endpoint}/federation/v1/migrations",
                     headers={"X-Auth-Token": admin_token(proxy)}, timeout=10)
    assert r.status_code == 200, r.text
    out = []
    for m in r.json()["migrations"]:
        entry = m.get("entry", m)
        if name in entry.get("containers", []):
            out.append(entry)
    return out


def test_concurrent_duplicate_starts_run_one_migration(mproxy, clusters):
    """Eight operators (or one impatient script) ask to move the same container at the
    same moment: one migration runs, the others are refused with 409, and the
    container ends on the destination once, complete."""
    fed = conn(mproxy.auth_url)
    name = uniq("dup")
    want = fill_container(fed, name, 20)
    token = admin_token(mproxy)
    barrier = threading.Barrier(8)
    answers = []

    def go():
        barrier.wait()
        r = post_move(mproxy, {"account": "AUTH_test", "container": name, "to": "west"}, token)
        answers.append((r.status_code, r.text))

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(c for c, _ in answers)
    assert codes == [202] + [409] * 7, answers
    mid = next(json.loads(t)["id"] for c, t in answers if c == 202)
    wait_done(mproxy, mid)
    entries = journal_for(mproxy, name)
    # The refused requests left no journal entry behind (nothing to resume, nothing
    # that a later proxy could run a second time).
    assert [e["id"] for e in entries] == [mid], entries
    west = direct_objects(clusters["west"], name)
    assert {n: o["hash"] for n, o in west.items()} == want
    with pytest.raises(ClientException) as e:
        conn(clusters["east"].auth_url).head_container(name)
    assert e.value.http_status == 404


def test_drain_of_an_unknown_cluster_is_refused(mproxy):
    """A typo in the cluster name is not a drain of nothing (202, no migrations, and an
    operator who believes the cluster is empty): 409 naming the cluster, as a move to
    an unknown cluster answers."""
    r = requests.post(f"{mproxy.endpoint}/federation/v1/drains",
                      headers={"X-Auth-Token": admin_token(mproxy)},
                      json={"account": "AUTH_test", "cluster": "esat"}, timeout=30)
    assert r.status_code == 409, r.text
    assert "esat" in r.json()["error"]
    r = post_move(mproxy, {"account": "AUTH_test", "container": "whatever", "to": "esat"})
    assert r.status_code == 409, r.text


def test_drain_keeps_new_containers_off_the_cluster(mproxy, clusters):
    """Containers a client creates while the account is drained from east are placed
    on the other cluster (east is draining for that account), so that when the drain
    ends, east holds none of the account's containers. Before: 15 of 37 created during
    a drain landed on east and stayed there."""
    fed = conn(mproxy.auth_url, "test2:tester2", "testing2")
    east = conn(clusters["east"].auth_url, "test2:tester2", "testing2")
    tag = uniq("dk")
    old = [f"{tag}-old-{i}" for i in range(6)]
    for n in old:
        fed.put_container(n, headers={"X-Container-Attr-Cluster": "east"})
        for j in range(10):
            fed.put_object(n, f"o{j}", b"x" * 100)
    r = requests.post(f"{mproxy.endpoint}/federation/v1/drains",
                      headers={"X-Auth-Token": admin_token(mproxy)},
                      json={"account": "AUTH_test2", "cluster": "east", "concurrency": 2},
                      timeout=30)
    assert r.status_code == 202, r.text
    new = []

    def on_east():
        _, listing = east.get_account(full_listing=True)
        return [c["name"] for c in listing if c["name"].startswith(tag)]

    deadline = time.time() + 120
    while time.time() < deadline and [n for n in on_east() if n in old]:
        n = f"{tag}-new-{len(new)}"
        fed.put_container(n)
        fed.put_object(n, "a", n.encode())
        new.append(n)
    assert len(new) >= 10, "the drain ended before the client could create containers"
    assert on_east() == []
    west = conn(clusters["west"].auth_url, "test2:tester2", "testing2")
    for n in new:
        assert fed.head_container(n)["x-container-attr-cluster"] == "west"
        assert west.get_object(n, "a")[1] == n.encode()
    for n in old:
        assert fed.head_container(n)["x-container-attr-cluster"] == "west"


def large_objects_apart(fed, tag):
    """A container on east whose DLO and SLO have their segments in another container
    on east (not `<name>_segments`: it does not move with it)."""
    m, s = f"{tag}-m", f"{tag}-s"
    fed.put_container(m, headers={"X-Container-Attr-Cluster": "east"})
    fed.put_container(s, headers={"X-Container-Attr-Cluster": "east"})
    for i in range(2):
        fed.put_object(s, f"seg{i}", bytes([65 + i]) * 10)
    fed.put_object(m, "dlo", b"", headers={"X-Object-Manifest": f"{s}/seg"})
    fed.put_object(m, "plain", b"p")
    return m, s


def test_dlo_whose_segments_stay_behind_still_reads(mproxy, clusters):
    """A DLO is copied as its manifest; its segments' container stays on east. On one
    real cluster the DLO reads as its segments (20 bytes); the destination would look
    for them in a container of its own. Before: after the move the DLO answered 404.
    Now the mover writes it as a DLO the proxy assembles: the same bytes and headers."""
    fed = conn(mproxy.auth_url)
    m, s = large_objects_apart(fed, uniq("dloapart"))
    east = conn(clusters["east"].auth_url)
    want_body = east.get_object(m, "dlo")[1]
    assert want_body == b"A" * 10 + b"B" * 10
    want = {k: v for k, v in east.head_object(m, "dlo").items()
            if k in ("x-object-manifest", "content-type", "content-length", "etag")}
    wait_done(mproxy, json.loads(post_move(mproxy, {"account": "AUTH_test", "container": m,
                                                    "to": "west"}).text)["id"])
    assert fed.head_container(m)["x-container-attr-cluster"] == "west"
    assert fed.get_object(m, "dlo")[1] == want_body
    got = {k: v for k, v in fed.head_object(m, "dlo").items() if k in want}
    assert got == want
    listing = {o["name"]: (o["bytes"], o["content_type"]) for o in fed.get_container(m)[1]}
    assert listing["dlo"] == (0, want["content-type"])


def test_slo_whose_segments_stay_behind_fails_cleanly(mproxy, clusters):
    """An SLO with its segments in a container that stays on east: the destination
    refuses the manifest (400, segments 404). Before: the migration retried that PUT
    forever (`running`, error repeated). Now it fails with the reason, rolled back:
    the record on east, the SLO readable, no copy on west."""
    fed = conn(mproxy.auth_url)
    m, s = large_objects_apart(fed, uniq("sloapart"))
    fed.put_object(m, "slo", json.dumps([{"path": f"/{s}/seg{i}"} for i in range(2)]),
                   query_string="multipart-manifest=put")
    mid = json.loads(post_move(mproxy, {"account": "AUTH_test", "container": m,
                                        "to": "west"}).text)["id"]
    deadline = time.time() + 60
    while time.time() < deadline:
        r = requests.get(f"{mproxy.endpoint}/federation/v1/migrations/{mid}",
                         headers={"X-Auth-Token": admin_token(mproxy)}, timeout=10).json()
        if r["entry"]["state"] != "running":
            break
        time.sleep(0.3)
    assert "failed" in r["entry"]["state"], r
    assert "SLO" in r["entry"]["state"]["failed"]["reason"], r
    assert fed.head_container(m)["x-container-attr-cluster"] == "east"
    assert fed.get_object(m, "slo")[1] == b"A" * 10 + b"B" * 10
    with pytest.raises(ClientException) as e:
        conn(clusters["west"].auth_url).head_container(m)
    assert e.value.http_status == 404
    fed.put_object(m, "after", b"x")
    assert conn(clusters["east"].auth_url).head_object(m, "after")["content-length"] == "1"


def test_segments_container_alone_is_refused(mproxy, clusters):
    """`photos_segments` asked to move alone while `photos` shares its cluster: on one
    real cluster the SLO reads; moved alone, it answered 409 (Swift's SLO middleware
    on east finds no segments). Refused with 409 naming the base; moving the base
    takes both, and the SLO still reads."""
    fed = conn(mproxy.auth_url)
    base = uniq("segalone")
    fed.put_container(base, headers={"X-Container-Attr-Cluster": "east"})
    fed.put_container(f"{base}_segments")
    fed.put_object(f"{base}_segments", "s1", b"abc")
    fed.put_object(base, "slo", json.dumps([{"path": f"/{base}_segments/s1"}]),
                   query_string="multipart-manifest=put")
    r = post_move(mproxy, {"account": "AUTH_test", "container": f"{base}_segments", "to": "west"})
    assert r.status_code == 409, r.text
    assert base in r.json()["error"]
    assert fed.get_object(base, "slo")[1] == b"abc"
    r = post_move(mproxy, {"account": "AUTH_test", "container": base, "to": "west"})
    assert r.status_code == 202, r.text
    wait_done(mproxy, r.json()["id"])
    for n in (base, f"{base}_segments"):
        assert fed.head_container(n)["x-container-attr-cluster"] == "west"
    assert fed.get_object(base, "slo")[1] == b"abc"


def test_switch_completes_while_clients_keep_writing(mproxy, clusters):
    """Three clients overwrite one object each, and POST metadata to another, without
    pause while the container moves. The switch holds their writes and must verify
    anyway: before, a held write named its object for the mover's re-check at every
    50 ms poll, so each verification pass had something to copy, every switch gave up
    after holding writes for max_hold/2 (10 s), and the move never ended while writes
    went on (7 attempts in 100 s). Then, as on one cluster, the last acknowledged write
    of each name wins."""
    fed = conn(mproxy.auth_url)
    name = uniq("hot")
    fill_container(fed, name, 60)
    mid = json.loads(post_move(mproxy, {"account": "AUTH_test", "container": name,
                                        "to": "west"}).text)["id"]
    stop = threading.Event()
    last, meta, slowest, errors = {}, {}, [0.0], []

    def writer(k):
        c = conn(mproxy.auth_url)
        n = 0
        try:
            while not stop.is_set():
                body = f"{k}-{n}".encode()
                t0 = time.time()
                c.put_object(name, f"hot{k}", body)
                last[k] = body
                c.post_object(name, f"o{k:04d}", headers={"X-Object-Meta-N": str(n)})
                meta[f"o{k:04d}"] = str(n)
                slowest[0] = max(slowest[0], time.time() - t0)
                n += 1
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        done = None
        deadline = time.time() + 60
        while time.time() < deadline:
            r = requests.get(f"{mproxy.endpoint}/federation/v1/migrations/{mid}",
                             headers={"X-Auth-Token": admin_token(mproxy)}, timeout=10).json()
            if r["entry"]["state"] != "running":
                done = r
                break
            time.sleep(0.3)
        time.sleep(1)  # writes go on to the destination after the switch
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert done is not None and done["entry"]["state"] == "done", \
        f"the move did not end while clients wrote: {r}"
    assert slowest[0] < 10, slowest
    west = conn(clusters["west"].auth_url)
    for k, body in last.items():
        assert west.get_object(name, f"hot{k}")[1] == body
        assert fed.get_object(name, f"hot{k}")[1] == body
    for o, n in meta.items():
        assert west.head_object(name, o)["x-object-meta-n"] == n

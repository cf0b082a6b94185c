"""Many proxies, one truth: three proxy processes sharing a real database attribute
store (PostgreSQL, then MariaDB: Debian's packages, each started on loopback in a
temporary directory, stopped by PID) in front of two real Swift clusters. Every test
runs once per database. Placement preferences are crossed between the
proxies, so every concurrent create of one name is a real disagreement the database
has to settle; the proxies' caches keep records for a long TTL (60 s), so anything
seen sooner comes from the database's change feed (PostgreSQL's notifications, the
MariaDB store's polled change log)."""

import os
import signal
import subprocess
import threading
import time
import uuid

import pytest
import requests
from swiftclient import client as swc

import peers
from test_swift_federation import USER, KEY, conn, where

TTL = 60
POLICY = ('kind = "first-of"\n'
          'policies = [{ kind = "pin" }, { kind = "service-level", then = { kind = "most-free" } }]\n')
# For tier=a, proxies a and b choose east, proxy c chooses west.
CROSSED = {"a": {"east": "a", "west": "b"}, "b": {"east": "a", "west": "b"},
           "c": {"east": "b", "west": "a"}}


@pytest.fixture(scope="module", params=["postgres", "mariadb"])
def db(request):
    d = peers.Postgres() if request.param == "postgres" else peers.MariaDB()
    d.start()
    yield d
    d.teardown()


def is_maria(db):
    return isinstance(db, peers.MariaDB)


def db_store(db):
    if is_maria(db):
        return (f'{{ kind = "mysql", url = "{db.url}", password_file = "{db.password_file}", '
                'timeout_seconds = 3 }')
    return f'{{ kind = "postgres", url = "{db.url}", timeout_seconds = 3 }}'


def query(db, sql):
    return db.sql(sql) if is_maria(db) else db.psql(sql)


def db_env(db):
    """The environment naming the database to the Rust tests."""
    if is_maria(db):
        return {"STACKFED_MYSQL_URL": db.url, "STACKFED_MYSQL_PASSWORD_FILE": str(db.password_file)}
    return {"STACKFED_PG_URL": db.url}


@pytest.fixture(scope="module")
def trio(workdir, clusters, proxy_binary, db):
    ps = {}
    try:
        for name in ("a", "b", "c"):
            p = peers.FederationProxy(
                workdir / f"trio-{name}", list(clusters.values()), policy_toml=POLICY,
                labels={c: {"tier": v} for c, v in CROSSED[name].items()},
                store=db_store(db), extra_toml=f"cache_ttl_seconds = {TTL}")
            p.start(proxy_binary)
            ps[name] = p
        yield ps
    finally:
        for p in ps.values():
            p.stop()


def auth(proxy):
    return conn(proxy.auth_url).get_auth()


def records(db, name):
    """The clusters the database records for container `name` of AUTH_test."""
    if is_maria(db):
        return db.sql("SELECT cluster FROM stackfed_containers WHERE account = 'AUTH_test' "
                      f"AND container = '{name}'").split()
    out = db.psql("SELECT cluster FROM stackfed_containers WHERE account = 'AUTH_test'::bytea "
                  f"AND container = convert_to('{name}', 'UTF8')")
    return out.split()


# One feature set for every cargo call here, so that they share one build.
FEATURES = "postgres,mysql"


def run_cargo_test(db, test, crate="federation-core", features=FEATURES):
    env = {**os.environ, **db_env(db)}
    run = subprocess.run(
        ["cargo", "test", "--quiet", "--locked", "-p", crate, "--features", features, "--lib",
         test, "--", "--ignored", "--nocapture", "--test-threads=1"],
        cwd=peers.ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return run.stdout


def test_store_passes_the_conformance_suite_and_bounds_staleness(db):
    if is_maria(db):
        out = run_cargo_test(db, "attrs::mysql::tests")
        assert "7 passed" in out, out[-2000:]
    else:
        out = run_cargo_test(db, "attrs::postgres::tests")
        assert "5 passed" in out, out[-2000:]
    for line in out.splitlines():
        if line.startswith("STALENESS"):
            print(line)


def test_a_token_from_one_proxy_works_on_every_proxy(trio, db):
    url, token = auth(trio["a"])
    assert url.startswith(trio["a"].endpoint)
    for name in ("a", "b", "c"):
        p = trio[name]
        r = requests.head(f"{p.endpoint}/v1/AUTH_test", headers={"X-Auth-Token": token}, timeout=10)
        assert r.status_code in (200, 204), (name, r.status_code, r.text)
        bogus = requests.head(f"{p.endpoint}/v1/AUTH_test", headers={"X-Auth-Token": token + "0"},
                              timeout=10)
        assert bogus.status_code == 401, (name, bogus.status_code)
    # swiftclient with a token and storage URL on another proxy.
    c = swc.Connection(preauthurl=f"{trio['c'].endpoint}/v1/AUTH_test", preauthtoken=token, retries=0)
    name = f"tok-{uuid.uuid4().hex[:8]}"
    c.put_container(name)
    c.put_object(name, "o", b"hello")
    assert swc.Connection(preauthurl=f"{trio['b'].endpoint}/v1/AUTH_test", preauthtoken=token,
                          retries=0).get_object(name, "o")[1] == b"hello"
    c.delete_object(name, "o")
    c.delete_container(name)
    # The database holds neither the token nor the key in clear.
    dump = query(db, "SELECT CONCAT(token_hash, sealed) FROM stackfed_sessions" if is_maria(db) else
                 "SELECT encode(token_hash, 'escape') || encode(sealed, 'escape') FROM stackfed_sessions")
    assert dump, "sessions are in the database"
    for secret in (token, KEY, USER):
        assert secret not in dump


def test_concurrent_creates_at_random_proxies_leave_one_truth(trio, clusters, db):
    proxies = list(trio.values())
    tokens = {p.endpoint: auth(p)[1] for p in proxies}
    rounds, clients = 50, 6
    names = [f"race-{uuid.uuid4().hex[:8]}-{i}" for i in range(rounds)]
    failures = []
    for round_no, name in enumerate(names):
        barrier = threading.Barrier(clients)

        # Every proxy takes part in every round (two clients each, in a rotating order):
        # a random choice of proxies left proxy c (the one preferring west) out of a
        # round in 9% of rounds, and could have let one preference win every race.
        def create(k):
            p = proxies[(k + round_no) % len(proxies)]
            try:
                barrier.wait(timeout=10)
                r = requests.put(f"{p.endpoint}/v1/AUTH_test/{name}",
                                 headers={"X-Auth-Token": tokens[p.endpoint], "X-Container-Attr-Tier": "a"},
                                 timeout=60)
                if r.status_code not in (201, 202):
                    failures.append((name, p.endpoint, r.status_code, r.text))
            except Exception as e:  # noqa: BLE001 - reported below
                failures.append((name, p.endpoint, repr(e)))

        threads = [threading.Thread(target=create, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
    assert not failures, failures[:5]
    per_cluster = {}
    for name in names:
        holders = where(clusters, name)
        assert len(holders) == 1, f"{name} is on {holders}"
        assert records(db, name) == holders, (name, records(db, name), holders)
        seen = {conn(p.auth_url).head_container(name)["x-container-attr-cluster"] for p in proxies}
        assert seen == set(holders), (name, seen, holders)
        per_cluster[holders[0]] = per_cluster.get(holders[0], 0) + 1
    print("winners per cluster:", per_cluster)
    assert len(per_cluster) == 2, "both preferences won some races: the races were real"
    c = conn(trio["a"].auth_url)
    for name in names:
        c.delete_container(name)
        assert where(clusters, name) == []


def test_delete_and_recreate_elsewhere_is_seen_by_a_third_proxy(trio, clusters):
    a, b, c = (conn(trio[n].auth_url) for n in ("a", "b", "c"))
    samples = []
    for i in range(5):
        name = f"move-{uuid.uuid4().hex[:8]}"
        a.put_container(name, headers={"X-Container-Attr-Cluster": "east"})
        a.put_object(name, "o", b"on east")
        assert c.get_object(name, "o")[1] == b"on east"  # C caches the record (TTL 60 s)
        a.delete_object(name, "o")
        a.delete_container(name)
        b.put_container(name, headers={"X-Container-Attr-Cluster": "west"})
        b.put_object(name, "o", b"on west")
        start = time.monotonic()
        while True:
            try:
                body = c.get_object(name, "o")[1]
            except swc.ClientException as e:
                body = e.http_status
            if body == b"on west" or time.monotonic() - start > TTL / 2:
                break
            time.sleep(0.005)
        samples.append(time.monotonic() - start)
        assert body == b"on west", (name, body)
        assert where(clusters, name) == ["west"]
        assert c.head_container(name)["x-container-attr-cluster"] == "west"
        b.delete_object(name, "o")
        b.delete_container(name)
    print(f"third proxy saw the move after (s): {[round(s, 4) for s in samples]}")
    # 20-40 ms when quiet (README). The claim is that the change feed, not the cache's
    # 60 s TTL, bounds what the third proxy serves: 5 s (TTL / 12) says so with room for
    # a loaded 2-core machine (1 s was a "within N s" check tight under load).
    assert max(samples) < TTL / 12, samples


def test_kill_9_during_creates_leaves_no_orphan_and_no_lost_record(workdir, clusters, proxy_binary, db, trio):
    victim = peers.FederationProxy(workdir / "victim", list(clusters.values()), policy_toml=POLICY,
                                   labels={c: {"tier": v} for c, v in CROSSED["c"].items()},
                                   store=db_store(db))
    victim.start(proxy_binary)
    try:
        token = auth(victim)[1]
        names = [f"k9-{uuid.uuid4().hex[:8]}-{i}" for i in range(400)]
        answered = {}
        stop = threading.Event()

        def create(chunk):
            for n in chunk:
                if stop.is_set():
                    return
                try:
                    r = requests.put(f"{victim.endpoint}/v1/AUTH_test/{n}",
                                     headers={"X-Auth-Token": token, "X-Container-Attr-Tier": "a"}, timeout=30)
                    answered[n] = r.status_code
                except requests.RequestException:
                    answered[n] = None

        threads = [threading.Thread(target=create, args=(names[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        victim.proc.stop(sig=signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        victim.stop()
    created = [n for n, s in answered.items() if s == 201]
    assert created, "some creates finished before the kill"
    attempted = [n for n in names if n in answered]
    unfinished = [n for n in attempted if answered[n] != 201]
    print(f"kill -9: {len(created)} creates answered 201, {len(unfinished)} cut off")
    survivor = conn(trio["a"].auth_url)
    listed = {c["name"] for c in survivor.get_account(full_listing=True)[1]}
    for n in created:
        holders = where(clusters, n)
        assert len(holders) == 1 and records(db, n) == holders, (n, holders, records(db, n))
        assert n in listed
    # A create cut off by the kill left either nothing, or a record whose container a
    # retry (through another proxy) creates on the recorded cluster; never a container
    # without a record, nor one on another cluster than its record.
    for c in clusters.values():
        # This test's names only: test_hardening.py's kill -9 creates share these
        # clusters, with records in its own proxy's store, not in this database.
        held = {x["name"] for x in conn(c.auth_url).get_account(full_listing=True)[1]
                if x["name"] in set(names)}
        for n in held:
            assert records(db, n) == [c.name], f"orphan {n} on {c.name}: records {records(db, n)}"
    half = 0
    for n in unfinished:
        rec = records(db, n)
        if rec and where(clusters, n) == []:
            half += 1
            survivor.put_container(n, headers={"X-Container-Attr-Tier": "a"})
            assert where(clusters, n) == rec
    print(f"kill -9: {half} records whose container was not yet created, completed by a retry")
    for n in names:
        if records(db, n):
            survivor.delete_container(n)


def test_database_restart_gives_clear_503s_and_nothing_half_written(trio, clusters, db):
    a = trio["a"]
    url, token = auth(a)
    known = f"pgdown-known-{uuid.uuid4().hex[:8]}"
    conn(a.auth_url).put_container(known, headers={"X-Container-Attr-Cluster": "east"})
    name = f"pgdown-{uuid.uuid4().hex[:8]}"
    db.stop()
    try:
        start = time.monotonic()
        r = requests.put(f"{url}/{name}", headers={"X-Auth-Token": token, "X-Container-Attr-Tier": "a"},
                         timeout=30)
        assert r.status_code == 503, (r.status_code, r.text)
        assert any(w in r.text.lower() for w in ("store", "postgres", "mysql")), r.text
        assert time.monotonic() - start < 10
        # A new login cannot be shared: 503, not a token that other proxies ignore.
        login = requests.get(a.auth_url, headers={"X-Auth-User": USER, "X-Auth-Key": KEY}, timeout=30)
        assert login.status_code == 503, (login.status_code, login.text)
        # A token unknown to proxy b's memory cannot be checked: 503, not 401.
        other = requests.head(f"{trio['b'].endpoint}/v1/AUTH_test", headers={"X-Auth-Token": "AUTH_tk" + "0" * 32},
                              timeout=30)
        assert other.status_code == 503, other.status_code
        assert where(clusters, name) == []
    finally:
        db.start_server()
    deadline = time.monotonic() + 30
    while True:
        r = requests.put(f"{url}/{name}", headers={"X-Auth-Token": token, "X-Container-Attr-Tier": "a"},
                         timeout=30)
        if r.status_code == 201 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 201, (r.status_code, r.text)
    assert where(clusters, name) == ["east"] == records(db, name)
    for p in trio.values():
        assert conn(p.auth_url).head_container(name)["x-container-attr-cluster"] == "east"
    c = conn(trio["b"].auth_url)
    c.delete_container(name)
    c.delete_container(known)


def test_store_figures(clusters, db):
    """The README's per-store figures (printed; bounded: 200 sequential and 800
    concurrent creates per database store, 10 and 64 for the Swift-backed one). With
    PostgreSQL: SQLite, PostgreSQL and the Swift-backed store; with MariaDB: MySQL."""
    env = {**os.environ, **db_env(db)}
    if is_maria(db):
        env["STACKFED_FIGURES_SKIP_SQLITE"] = "1"
    else:
        env.update({"STACKFED_REGISTRY_ENDPOINT": clusters["east"].endpoint,
                    "STACKFED_REGISTRY_USER": peers.REGISTRY_USER,
                    "STACKFED_REGISTRY_KEY": peers.REGISTRY_KEY})
    run = subprocess.run(
        ["cargo", "test", "--quiet", "--locked", "-p", "swift-proto", "--features", FEATURES,
         "--test", "store_figures", "--", "--ignored", "--nocapture"],
        cwd=peers.ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    figures = [line for line in run.stdout.splitlines() if line.startswith("FIGURE")]
    assert len(figures) == (1 if is_maria(db) else 3), run.stdout[-2000:]
    for line in figures:
        print(line)

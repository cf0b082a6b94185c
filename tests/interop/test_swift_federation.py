"""The federation proxy, driven by real Swift clients, over two real Swift clusters.

Every claim is checked against the clusters directly, with their own credentials."""

import hashlib
import json
import os
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET

import pytest
import requests
from swiftclient import client as swc
from swiftclient.exceptions import ClientException

import peers

USER, KEY = "test:tester", "testing"


def conn(auth_url, user=USER, key=KEY):
    return swc.Connection(authurl=auth_url, user=user, key=key, retries=0)


def uniq(prefix="c"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def where(clusters, name, user=USER, key=KEY):
    """The clusters that really hold container `name`."""
    found = []
    for c in clusters.values():
        try:
            conn(c.auth_url, user, key).head_container(name)
            found.append(c.name)
        except ClientException as e:
            assert e.http_status == 404, e
    return found


def cluster_of(proxy_conn, name):
    return proxy_conn.head_container(name)["x-container-attr-cluster"]


@pytest.fixture
def fed(proxy):
    return conn(proxy.auth_url)


def test_auth_hands_out_a_proxy_url(proxy, fed):
    url, token = fed.get_auth()
    assert url == f"{proxy.endpoint}/v1/AUTH_test"
    assert token.startswith("AUTH_tk")
    with pytest.raises(ClientException) as e:
        conn(proxy.auth_url, key="wrong").get_auth()
    assert e.value.http_status == 401
    r = requests.get(f"{proxy.endpoint}/v1/AUTH_test", headers={"X-Auth-Token": "AUTH_tkbogus"})
    assert r.status_code == 401


def test_containers_spread_over_both_clusters_and_live_on_one(clusters, fed):
    # Rendezvous placement of random names: 16 leave one cluster empty once in 32,768
    # runs; more names are made until both hold one (up to 40: once in 5e11).
    names, placed = [], {}
    while len(names) < 16 or (set(placed.values()) != {"east", "west"} and len(names) < 40):
        n = uniq("spread")
        fed.put_container(n)
        names.append(n)
        holders = where(clusters, n)
        assert len(holders) == 1, (n, holders)
        assert cluster_of(fed, n) == holders[0]
        placed[n] = holders[0]
    assert set(placed.values()) == {"east", "west"}, placed
    for n in names:
        fed.delete_container(n)
        assert where(clusters, n) == []


def test_service_level_and_pin(clusters, fed, proxy):
    gold, silver, pinned = uniq("gold"), uniq("silver"), uniq("pinned")
    fed.put_container(gold, headers={"X-Container-Attr-Tier": "gold"})
    fed.put_container(silver, headers={"X-Container-Attr-Tier": "silver"})
    fed.put_container(pinned, headers={"X-Container-Attr-Cluster": "west", "X-Container-Attr-Tier": "gold"})
    assert where(clusters, gold) == ["east"]
    assert where(clusters, silver) == ["west"]
    assert where(clusters, pinned) == ["west"]
    # No cluster offers platinum: 400, nothing anywhere, no record.
    bad = uniq("platinum")
    with pytest.raises(ClientException) as e:
        fed.put_container(bad, headers={"X-Container-Attr-Tier": "platinum"})
    assert e.value.http_status == 400
    assert "platinum" in e.value.http_response_content.decode()
    assert where(clusters, bad) == []
    with pytest.raises(ClientException) as e:
        fed.head_container(bad)
    assert e.value.http_status == 404
    with pytest.raises(ClientException) as e:
        fed.put_container(uniq("x"), headers={"X-Container-Attr-Cluster": "nowhere"})
    assert e.value.http_status == 400
    # A container never moves.
    with pytest.raises(ClientException) as e:
        fed.post_container(gold, headers={"X-Container-Attr-Cluster": "west"})
    assert e.value.http_status == 409
    for n in (gold, silver, pinned):
        fed.delete_container(n)


def test_attributes_round_trip_and_never_reach_the_backend(clusters, fed):
    n = uniq("attrs")
    fed.put_container(n, headers={"X-Container-Attr-Owner": "ops", "X-Container-Meta-Color": "blue"})
    h = fed.head_container(n)
    assert h["x-container-attr-owner"] == "ops"
    assert h["x-container-meta-color"] == "blue"
    home = clusters[h["x-container-attr-cluster"]]
    direct = conn(home.auth_url).head_container(n)
    assert direct["x-container-meta-color"] == "blue"
    assert not any(k.startswith("x-container-attr-") for k in direct), direct
    fed.post_container(n, headers={"X-Container-Attr-Owner": "", "X-Container-Attr-Team": "storage ✓"})
    h, _ = fed.get_container(n)
    assert "x-container-attr-owner" not in h
    assert h["x-container-attr-team"] == "storage ✓"
    # Too long a value: 400, nothing changed.
    with pytest.raises(ClientException) as e:
        fed.post_container(n, headers={"X-Container-Attr-Team": "v" * 300})
    assert e.value.http_status == 400
    assert fed.head_container(n)["x-container-attr-team"] == "storage ✓"
    fed.delete_container(n)


def test_objects_stream_through_identical_with_ranges(clusters, fed):
    n = uniq("objects")
    fed.put_container(n)
    home = clusters[cluster_of(fed, n)]
    data = os.urandom(3 * 1024 * 1024 + 17)
    etag = fed.put_object(n, "dir/blob.bin", data)
    assert etag == hashlib.md5(data).hexdigest()

    # Chunked upload (no Content-Length) from a generator.
    def chunks():
        for i in range(0, len(data), 65536):
            yield data[i:i + 65536]

    fed.put_object(n, "chunked.bin", chunks())
    for name in ("dir/blob.bin", "chunked.bin"):
        _, body = fed.get_object(n, name)
        assert body == data
        h, part = fed.get_object(n, name, headers={"Range": "bytes=100-65635"})
        assert part == data[100:65636]
        assert h["content-range"] == f"bytes 100-65635/{len(data)}"
        # It is really on the container's cluster.
        _, direct = conn(home.auth_url).get_object(n, name)
        assert direct == data
    # Object listing and metadata pass through.
    _, listing = fed.get_container(n)
    assert sorted(o["name"] for o in listing) == ["chunked.bin", "dir/blob.bin"]
    fed.post_object(n, "chunked.bin", headers={"X-Object-Meta-K": "v"})
    assert fed.head_object(n, "chunked.bin")["x-object-meta-k"] == "v"
    # Deleting a non-empty container is refused and loses nothing.
    with pytest.raises(ClientException) as e:
        fed.delete_container(n)
    assert e.value.http_status == 409
    assert fed.head_container(n)["x-container-object-count"] == "2"
    for name in ("dir/blob.bin", "chunked.bin"):
        fed.delete_object(n, name)
    fed.delete_container(n)
    assert where(clusters, n) == []
    with pytest.raises(ClientException) as e:
        fed.get_object(n, "chunked.bin")
    assert e.value.http_status == 404


def utf8_sorted(names, reverse=False):
    return sorted(names, key=lambda s: s.encode(), reverse=reverse)


def model(names, prefix="", delimiter=None, marker=None, end_marker=None, reverse=False, limit=10000):
    lower, upper = (end_marker, marker) if reverse else (marker, end_marker)
    out = set()
    for n in names:
        b = n.encode()
        if prefix and not n.startswith(prefix):
            continue
        if lower and not b > lower.encode():
            continue
        if upper and not b < upper.encode():
            continue
        if delimiter and delimiter in n[len(prefix):]:
            d = n[: len(prefix) + n[len(prefix):].index(delimiter) + 1]
            if d != lower:
                out.add(("subdir", d))
            continue
        out.add(("name", n))
    entries = sorted(out, key=lambda e: e[1].encode(), reverse=reverse)
    return entries[:limit]


def entries_of(listing):
    return [("subdir", e["subdir"]) if "subdir" in e else ("name", e["name"]) for e in listing]


# The listing tests compare whole account listings and usage: an account of their own
# (peers.LISTING_USER), which no other module writes to, whatever the modules' order.
LISTING_USER, LISTING_KEY = peers.LISTING_USER, peers.LISTING_KEY


@pytest.fixture(scope="module")
def listing_account(clusters, proxy):
    """An account of its own, holding a set of containers spread over both clusters."""
    fed = conn(proxy.auth_url, LISTING_USER, LISTING_KEY)
    names = ["alpha", "logs-2024", "logs-2025", "logs.old", "photos", "zebra", "é-acute",
             "中文", "𝄞music", "a-b-c", "a0", "a.x", "Upper", "~tilde"]
    for i, n in enumerate(names):
        fed.put_container(n, headers={"X-Container-Attr-Cluster": "east" if i % 2 else "west"})
        fed.put_object(n, "o", b"x" * (i + 1))
    return fed, names


def test_merged_listings_equal_the_union(clusters, listing_account):
    fed, names = listing_account
    # The containers really are on both clusters.
    direct = {c: {e["name"] for e in conn(cl.auth_url, LISTING_USER, LISTING_KEY).get_account(full_listing=True)[1]}
              for c, cl in clusters.items()}
    assert direct["east"] and direct["west"]
    assert direct["east"] | direct["west"] == set(names)
    cases = [
        {}, {"prefix": "logs"}, {"delimiter": "-"}, {"prefix": "logs-", "delimiter": "-"},
        {"marker": "logs"}, {"end_marker": "photos"}, {"marker": "a", "end_marker": "zz"},
        {"reverse": True}, {"reverse": True, "marker": "photos", "end_marker": "a0"},
        {"delimiter": "-", "reverse": True}, {"limit": 3}, {"limit": 3, "marker": "logs-2024"},
        {"prefix": "é"}, {"delimiter": "."}, {"marker": "a-b", "delimiter": "-"},
        {"prefix": "a", "delimiter": "-", "limit": 2},
    ]
    for q in cases:
        kwargs = dict(q)
        reverse = kwargs.pop("reverse", False)
        url, token = fed.get_auth()
        params = {"format": "json", **kwargs}
        if reverse:
            params["reverse"] = "true"
        r = requests.get(url, params=params, headers={"X-Auth-Token": token})
        assert r.status_code == 200, (q, r.status_code, r.text)
        listing = r.json()
        expected = model(names, reverse=reverse, **kwargs)
        assert entries_of(listing) == expected, q


def test_paging_through_the_merged_listing(listing_account):
    fed, names = listing_account
    for page in (1, 2, 5):
        seen, marker = [], ""
        while True:
            _, listing = fed.get_account(marker=marker, limit=page)
            if not listing:
                break
            assert len(listing) <= page
            seen += [e["name"] for e in listing]
            marker = listing[-1]["name"]
        assert seen == utf8_sorted(names), page
    # swiftclient's own full listing pages with markers too.
    _, full = fed.get_account(full_listing=True, limit=4)
    assert [e["name"] for e in full] == utf8_sorted(names)


def test_listing_formats(proxy, listing_account):
    fed, names = listing_account
    url, token = fed.get_auth()
    h = {"X-Auth-Token": token}
    plain = requests.get(url, headers=h)
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "text/plain; charset=utf-8"
    assert plain.text.splitlines() == utf8_sorted(names)
    js = requests.get(url + "?format=json", headers=h).json()
    assert [e["name"] for e in js] == utf8_sorted(names)
    assert all({"count", "bytes", "last_modified"} <= set(e) for e in js)
    x = requests.get(url, headers={**h, "Accept": "application/xml"})
    assert x.headers["content-type"] == "application/xml; charset=utf-8"
    root = ET.fromstring(x.content)
    assert root.tag == "account" and root.get("name") == f"AUTH_{LISTING_USER.split(':')[0]}"
    assert [c.findtext("name") for c in root.findall("container")] == utf8_sorted(names)
    sub = ET.fromstring(requests.get(url + "?format=xml&delimiter=-", headers=h).content)
    assert sorted(s.get("name") for s in sub.findall("subdir")) == ["a-", "logs-", "é-"]
    # Empty results: 204 in plain text, 200 with [] in JSON, as Swift answers.
    assert requests.get(url + "?prefix=nothing", headers=h).status_code == 204
    r = requests.get(url + "?prefix=nothing&format=json", headers=h)
    assert (r.status_code, r.json()) == (200, [])
    # Parameters as a real Swift 2.38 account server takes them: only a limit over
    # 10,000 is refused; other limits mean the default, any delimiter goes.
    assert requests.get(f"{url}?limit=10001", headers=h).status_code == 412
    for q in ("limit=-1", "limit=abc", "delimiter=ab"):
        assert requests.get(f"{url}?{q}", headers=h).status_code == 200, q
    assert requests.get(url, headers={**h, "Accept": "image/png"}).status_code == 406


def test_account_usage_is_summed(clusters, listing_account):
    fed, names = listing_account

    def direct_sum():
        tot = {"x-account-container-count": 0, "x-account-object-count": 0, "x-account-bytes-used": 0}
        for c in clusters.values():
            h = conn(c.auth_url, LISTING_USER, LISTING_KEY).head_account()
            for k in tot:
                tot[k] += int(h[k])
        return tot

    # 60 s: a container-updater sweep took longer than 20 s on a machine at load 35.
    deadline = time.time() + 60
    while True:
        want = direct_sum()
        got = fed.head_account()
        # Account counters lag until each cluster's container-updater sweeps (objects
        # and bytes can arrive in different sweeps): wait for both.
        settled = want["x-account-object-count"] == len(names) and want[
            "x-account-bytes-used"
        ] == sum(range(1, len(names) + 1))
        if settled or time.time() > deadline:
            break
        time.sleep(0.5)
    assert want["x-account-container-count"] == len(names)
    assert want["x-account-bytes-used"] == sum(range(1, len(names) + 1))
    for k, v in want.items():
        assert int(got[k]) == v, (k, got)
    # Per-policy counters are summed too.
    assert int(got["x-account-storage-policy-standard-bytes-used"]) == want["x-account-bytes-used"]
    h, _ = fed.get_account()
    assert int(h["x-account-container-count"]) == len(names)


def test_account_metadata_reaches_every_cluster(clusters, fed):
    key = uuid.uuid4().hex
    fed.post_account(headers={"X-Account-Meta-Temp-Url-Key": key, "X-Account-Meta-Color": "teal"})
    for c in clusters.values():
        h = conn(c.auth_url).head_account()
        assert h["x-account-meta-temp-url-key"] == key, c.name
        assert h["x-account-meta-color"] == "teal"
    assert fed.head_account()["x-account-meta-color"] == "teal"


def test_swift_cli(proxy, clusters, tmp_path):
    swift = str(peers.VENV_BIN / "swift")
    base = [swift, "-A", proxy.auth_url, "-U", USER, "-K", KEY]
    src = tmp_path / "up"
    src.mkdir()
    (src / "a.txt").write_bytes(b"hello federation\n")
    (src / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    n = uniq("cli")
    subprocess.run(base + ["upload", n, "a.txt", "big.bin"], cwd=src, check=True, capture_output=True)
    out = subprocess.run(base + ["list", n], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["a.txt", "big.bin"]
    dst = tmp_path / "down"
    dst.mkdir()
    subprocess.run(base + ["download", n], cwd=dst, check=True, capture_output=True)
    for f in ("a.txt", "big.bin"):
        assert (dst / f).read_bytes() == (src / f).read_bytes()
    stat = subprocess.run(base + ["stat", n], check=True, capture_output=True, text=True).stdout
    assert "Objects: 2" in stat
    assert len(where(clusters, n)) == 1
    subprocess.run(base + ["delete", n], check=True, capture_output=True)
    assert where(clusters, n) == []


def raw(proxy, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_bad_input_is_refused_and_writes_nothing(proxy, clusters, fed):
    url, token = fed.get_auth()
    h = {"X-Auth-Token": token}
    long = "x" * 257
    r = requests.put(f"{url}/{long}", headers=h)
    assert r.status_code == 400
    assert "Container name length of 257 longer than 256" in r.text
    assert where(clusters, long[:256]) == []
    r = requests.put(f"{url}/bad%FFname", headers=h)
    assert r.status_code == 412
    assert "Invalid UTF8" in r.text
    r = requests.put(f"{url}/nul%00name", headers=h)
    assert r.status_code == 412
    n = uniq("bad")
    fed.put_container(n)
    r = requests.put(f"{url}/{n}/{'o' * 1025}", headers=h, data=b"x")
    assert r.status_code == 400
    _, objs = fed.get_container(n)
    assert objs == []
    # A header with CR/LF smuggled into its value never reaches a handler.
    resp = raw(proxy, (f"PUT /v1/AUTH_test/{n}/o HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n"
                       f"X-Object-Meta-A: a\rX-Evil: 1\r\nContent-Length: 1\r\n\r\nx").encode())
    assert resp.startswith(b"HTTP/1.1 400"), resp[:100]
    _, objs = fed.get_container(n)
    assert objs == []
    # The backend refuses a container (metadata too long): no record, no container.
    m = uniq("refused")
    r = requests.put(f"{url}/{m}", headers={**h, "X-Container-Meta-Big": "v" * 300})
    assert r.status_code == 400
    assert where(clusters, m) == []
    assert requests.head(f"{url}/{m}", headers=h).status_code == 404
    # A storage policy no cluster offers.
    r = requests.put(f"{url}/{m}", headers={**h, "X-Storage-Policy": "no-such-policy"})
    assert r.status_code == 400
    assert where(clusters, m) == []
    # Unknown paths and methods.
    # (A real Swift 2.38 proxy: another API version with an account is a 400.)
    assert requests.get(f"{proxy.endpoint}/v2/AUTH_test", headers=h).status_code == 400
    # An account DELETE is the clusters' to answer (tempauth: 403 for a non-reseller).
    assert requests.delete(url, headers=h).status_code == 403
    fed.delete_container(n)


def test_info_reports_strictest_constraints_and_the_federation(proxy, clusters):
    info = requests.get(f"{proxy.endpoint}/info").json()
    direct = [requests.get(f"{c.endpoint}/info").json() for c in clusters.values()]
    assert info["swift"]["max_file_size"] == min(d["swift"]["max_file_size"] for d in direct)
    fed = info["federation"]
    assert [c["id"] for c in fed["clusters"]] == ["east", "west"]
    assert fed["placement_policy"] == "first-of"
    assert "standard" in [p["name"] for p in info["swift"]["policies"]]


def test_concurrent_creates_of_one_name_agree(clusters, proxy):
    import concurrent.futures as cf

    n = uniq("race")
    conns = [conn(proxy.auth_url) for _ in range(8)]
    with cf.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda c: c.put_container(n), conns))
    assert len(where(clusters, n)) == 1
    assert cluster_of(conns[0], n) == where(clusters, n)[0]
    conns[0].delete_container(n)


def test_cluster_tokens_are_renewed(clusters, proxy):
    fed = conn(proxy.auth_url)
    n = uniq("renew")
    fed.put_container(n, headers={"X-Container-Attr-Cluster": "east"})
    fed.put_object(n, "o", b"data")
    fed.get_auth()
    old_direct = conn(clusters["east"].auth_url)
    old_direct.get_auth()
    # East forgets every token: the proxy's token for east is now refused there...
    clusters["east"].restart_memcached()
    with pytest.raises(ClientException) as e:
        swc.head_container(old_direct.url, old_direct.token, n)
    assert e.value.http_status == 401
    # ...but the client's proxy token keeps working: the proxy renews east's token.
    # (Raw HTTP with the same token: swiftclient would re-authenticate by itself.)
    r = requests.get(f"{fed.url}/{n}/o", headers={"X-Auth-Token": fed.token})
    assert (r.status_code, r.content) == (200, b"data")
    fed.delete_object(n, "o")
    fed.delete_container(n)


def test_existing_containers_are_adopted_and_conflicts_reported(clusters, fed):
    east, west = conn(clusters["east"].auth_url), conn(clusters["west"].auth_url)
    # A container that exists on west only, created behind the proxy's back.
    n = uniq("joined")
    west.put_container(n, headers={"X-Container-Meta-Origin": "before-federation"})
    west.put_object(n, "old.txt", b"from before")
    assert fed.get_object(n, "old.txt")[1] == b"from before"
    h = fed.head_container(n)
    assert h["x-container-attr-cluster"] == "west"
    assert h["x-container-meta-origin"] == "before-federation"
    # A PUT of that name goes to where it already is, never a duplicate elsewhere.
    fed.put_container(n)
    assert where(clusters, n) == ["west"]
    # Two clusters holding one name: reported, not hidden or guessed.
    d = uniq("twice")
    east.put_container(d)
    west.put_container(d)
    with pytest.raises(ClientException) as e:
        fed.head_container(d)
    assert e.value.http_status == 409
    r = requests.get(f"{fed.url}/{d}", headers={"X-Auth-Token": fed.token})
    assert r.status_code == 409 and "east" in r.text and "west" in r.text
    fed.delete_object(n, "old.txt")
    fed.delete_container(n)
    east.delete_container(d)
    west.delete_container(d)


def test_segmented_uploads_and_versions_work_across_the_federation(proxy, clusters, fed, tmp_path):
    swift = [str(peers.VENV_BIN / "swift"), "-A", proxy.auth_url, "-U", USER, "-K", KEY]
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 333))
    for i, slo in enumerate(([], ["--use-slo"], [], ["--use-slo"])):
        n = uniq(f"seg{i}")
        subprocess.run(swift + ["upload", "--segment-size", "1048576", *slo, n, big.name],
                       cwd=tmp_path, check=True, capture_output=True)
        # The segments container lives with its container, so the manifest resolves there.
        assert where(clusters, n) == where(clusters, f"{n}_segments"), n
        _, body = fed.get_object(n, big.name)
        assert body == big.read_bytes()
        _, segs = fed.get_container(f"{n}_segments")
        assert len(segs) == 4
        subprocess.run(swift + ["delete", n], check=True, capture_output=True)
        subprocess.run(swift + ["delete", f"{n}_segments"], check=True, capture_output=True)
    # Versioning: the archive is created first; the versioned container joins it.
    archive, versioned = uniq("archive"), uniq("versioned")
    fed.put_container(archive)
    fed.put_container(versioned, headers={"X-Versions-Location": archive})
    assert where(clusters, versioned) == where(clusters, archive)
    fed.put_object(versioned, "doc", b"v1")
    fed.put_object(versioned, "doc", b"v2")
    assert fed.get_object(versioned, "doc")[1] == b"v2"
    _, kept = fed.get_container(archive)
    assert len(kept) == 1
    fed.delete_object(versioned, "doc")
    assert fed.get_object(versioned, "doc")[1] == b"v1", "the history restored the old version"
    # A location that does not exist yet is accepted, as Swift accepts it, and recorded on
    # the container's cluster: created later, it lands there.
    early, missing = uniq("early"), uniq("missing")
    fed.put_container(early, headers={"X-Versions-Location": missing})
    fed.put_container(missing)
    assert where(clusters, missing) == where(clusters, early)
    for n in (early, missing):
        fed.delete_container(n)
    # A location that lives elsewhere is refused clearly.
    other = "west" if where(clusters, archive) == ["east"] else "east"
    with pytest.raises(ClientException) as e:
        fed.put_container(uniq("v"), headers={"X-Versions-Location": archive, "X-Container-Attr-Cluster": other})
    assert e.value.http_status == 409
    fed.delete_object(versioned, "doc")
    for n in (versioned, archive):
        for o in fed.get_container(n)[1]:
            fed.delete_object(n, o["name"])
        fed.delete_container(n)


def test_symlinks_across_clusters_resolve_at_the_proxy(clusters, fed):
    a, b = uniq("links"), uniq("targets")
    fed.put_container(a, headers={"X-Container-Attr-Cluster": "east"})
    fed.put_container(b, headers={"X-Container-Attr-Cluster": "west"})
    data = os.urandom(100_000)
    fed.put_object(b, "target", data)
    fed.put_object(a, "local", b"same cluster")
    url, token = fed.get_auth()
    h = {"X-Auth-Token": token}
    # Dynamic links: one across clusters, one on the same cluster, one chained
    # (east link -> east link -> west object).
    for name, target in (("far", f"{b}/target"), ("near", f"{a}/local"), ("chain", f"{a}/far")):
        fed.put_object(a, name, b"", headers={"X-Symlink-Target": target})
    r = requests.get(f"{url}/{a}/far", headers=h)
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Location"] == f"/v1/AUTH_test/{b}/target"
    assert requests.get(f"{url}/{a}/chain", headers=h).content == data
    assert requests.get(f"{url}/{a}/near", headers=h).content == b"same cluster"
    r = requests.get(f"{url}/{a}/far", headers={**h, "Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    r = requests.head(f"{url}/{a}/far", headers=h)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(data)
    # The link itself, as Swift shows it.
    r = requests.get(f"{url}/{a}/far?symlink=get", headers=h)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["X-Symlink-Target"] == f"{b}/target"
    listing = {o["name"]: o for o in fed.get_container(a)[1]}
    assert listing["far"]["symlink_path"] == f"/v1/AUTH_test/{b}/target"
    # A dangling link is a plain 404; so is a missing object.
    fed.put_object(a, "dangling", b"", headers={"X-Symlink-Target": f"{b}/nothing"})
    assert requests.get(f"{url}/{a}/dangling", headers=h).status_code == 404
    assert requests.get(f"{url}/{a}/missing", headers=h).status_code == 404
    # A static link to another cluster: checked by the proxy (test_swift_links.py
    # compares it with one cluster); another ETag is refused and nothing stored.
    etag = hashlib.md5(data).hexdigest()
    r = requests.put(f"{url}/{a}/static-far", headers={**h, "X-Symlink-Target": f"{b}/target",
                                                       "X-Symlink-Target-Etag": etag}, data=b"")
    assert r.status_code == 201, r.text
    assert requests.get(f"{url}/{a}/static-far", headers=h).content == data
    r = requests.put(f"{url}/{a}/static", headers={**h, "X-Symlink-Target": f"{b}/target",
                                                   "X-Symlink-Target-Etag": "0" * 32}, data=b"")
    assert r.status_code == 409 and "does not match" in r.text, r.text
    assert requests.head(f"{url}/{a}/static", headers=h).status_code == 404
    local_etag = hashlib.md5(b"same cluster").hexdigest()
    r = requests.put(f"{url}/{a}/static", headers={**h, "X-Symlink-Target": f"{a}/local",
                                                   "X-Symlink-Target-Etag": local_etag}, data=b"")
    assert r.status_code == 201, r.text
    assert requests.get(f"{url}/{a}/static", headers=h).content == b"same cluster"
    for c in (a, b):
        for o in fed.get_container(c)[1]:
            fed.delete_object(c, o["name"])
        fed.delete_container(c)


def test_server_side_copy_across_clusters(clusters, fed):
    a, b = uniq("copy-east"), uniq("copy-west")
    fed.put_container(a, headers={"X-Container-Attr-Cluster": "east"})
    fed.put_container(b, headers={"X-Container-Attr-Cluster": "west"})
    data = os.urandom(2 * 1024 * 1024 + 5)
    fed.put_object(a, "src/obj", data, content_type="application/x-test",
                   headers={"X-Object-Meta-Color": "blue"})
    # COPY with Destination (what swiftclient's copy_object sends), east -> west.
    fed.copy_object(a, "src/obj", destination=f"/{b}/copied one")
    direct_west = conn(clusters["west"].auth_url)
    h, body = direct_west.get_object(b, "copied one")
    assert body == data
    assert h["content-type"] == "application/x-test"
    assert h["x-object-meta-color"] == "blue"
    # PUT with X-Copy-From, west -> east, fresh metadata plus a new key.
    fed.put_object(a, "back", None, headers={"X-Copy-From": f"/{b}/copied%20one",
                                               "X-Fresh-Metadata": "true", "X-Object-Meta-Shape": "round",
                                               "Content-Length": "0"})
    h, body = conn(clusters["east"].auth_url).get_object(a, "back")
    assert body == data
    assert h.get("x-object-meta-shape") == "round" and "x-object-meta-color" not in h
    # A missing source is a 404, and nothing is written.
    with pytest.raises(ClientException) as e:
        fed.copy_object(a, "nope", destination=f"/{b}/never")
    assert e.value.http_status == 404
    assert [o["name"] for o in fed.get_container(b)[1]] == ["copied one"]
    for c, o in ((a, "src/obj"), (a, "back"), (b, "copied one")):
        fed.delete_object(c, o)
    fed.delete_container(a)
    fed.delete_container(b)


def wait_until(predicate, seconds=60):
    """Polls until `predicate()` holds; the deadline is generous (a loaded 2-core CI
    machine), a condition that holds returns at once."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_draining_cluster_serves_but_takes_no_new_containers(workdir, clusters, proxy_binary, fed):
    on_west = uniq("old")
    fed.put_container(on_west, headers={"X-Container-Attr-Cluster": "west"})
    fed.put_object(on_west, "o", b"before draining")
    p = peers.FederationProxy(workdir / "draining-proxy", list(clusters.values()), states={"west": "draining"})
    p.start(proxy_binary)
    try:
        d = conn(p.auth_url)
        # Its existing containers are served (adopted by this proxy), reads and writes.
        assert d.get_object(on_west, "o")[1] == b"before draining"
        d.put_object(on_west, "p", b"while draining")
        assert fed.get_object(on_west, "p")[1] == b"while draining"
        # New containers avoid it, whatever their name; a pin to it is refused.
        for _ in range(6):
            n = uniq("new")
            d.put_container(n)
            assert where(clusters, n) == ["east"], n
            d.delete_container(n)
        url, token = d.get_auth()
        n = uniq("pin")
        r = requests.put(f"{url}/{n}", headers={"X-Auth-Token": token, "X-Container-Attr-Cluster": "west"})
        assert r.status_code >= 400 and "draining" in r.text.lower(), (r.status_code, r.text)
        assert where(clusters, n) == []
        info = requests.get(f"{p.endpoint}/info").json()
        assert {c["id"]: c["state"] for c in info["federation"]["clusters"]}["west"] == "draining"
    finally:
        p.stop()
    for o in ("o", "p"):
        fed.delete_object(on_west, o)
    fed.delete_container(on_west)


@pytest.fixture
def partial_proxy(workdir, clusters, proxy_binary):
    """A second proxy over the same clusters that answers account listings from the
    clusters still up, marking the answer, when one is down."""
    p = peers.FederationProxy(workdir / "partial-proxy", list(clusters.values()),
                              extra_toml="listing_partial = true\nprobe_interval_seconds = 0.5")
    p.start(proxy_binary)
    yield p
    p.stop()


def test_a_cluster_down_and_back(clusters, proxy, partial_proxy):
    """Runs last in this module: stops every process of cluster west, then restarts it."""
    fed = conn(proxy.auth_url)
    url, token = fed.get_auth()
    h = {"X-Auth-Token": token}
    purl, ptoken = conn(partial_proxy.auth_url).get_auth()
    ph = {"X-Auth-Token": ptoken}
    on_east, on_west = uniq("east"), uniq("west")
    fed.put_container(on_east, headers={"X-Container-Attr-Cluster": "east"})
    fed.put_container(on_west, headers={"X-Container-Attr-Cluster": "west"})
    fed.put_object(on_west, "o", b"kept")
    def west_state(p=proxy):
        info = requests.get(f"{p.endpoint}/info").json()
        return {c["id"]: c["state"] for c in info["federation"]["clusters"]}["west"]

    r = requests.get(purl + "?format=json", headers=ph)
    assert r.status_code == 200 and "x-federation-partial" not in r.headers
    assert {on_east, on_west} <= {e["name"] for e in r.json()}
    clusters["west"].stop()
    try:
        # Partial mode: the listing of the clusters still up, and a header naming the
        # missing one; HEAD says so too.
        assert wait_until(lambda: west_state(partial_proxy) == "offline")
        r = requests.get(purl + "?format=json", headers=ph)
        assert r.status_code == 200, (r.status_code, r.text)
        assert r.headers["x-federation-partial"] == "west"
        names = {e["name"] for e in r.json()}
        assert on_east in names and on_west not in names
        r = requests.head(purl, headers=ph)
        assert r.status_code // 100 == 2 and r.headers["x-federation-partial"] == "west"
        # The probe notices within a couple of seconds; /info shows the state.
        assert wait_until(lambda: west_state() == "offline")
        assert requests.get(f"{url}/{on_west}", headers=h).status_code == 503
        # Fast: no waiting on the dead cluster (no connection attempt: that could take
        # the 3 s connect timeout; 2 s leaves room for a loaded machine).
        t = time.time()
        r = requests.head(f"{url}/{on_west}/o", headers=h)
        assert r.status_code == 503 and time.time() - t < 2.0
        # The other cluster's containers are fully served.
        fed.put_object(on_east, "o", b"still here")
        assert fed.get_object(on_east, "o")[1] == b"still here"
        # The account listing says it cannot be complete, rather than dropping containers.
        r = requests.get(url, headers=h)
        assert r.status_code == 503 and "west" in r.text
        # New containers avoid the offline cluster, whatever their name.
        for _ in range(6):
            n = uniq("new")
            fed.put_container(n)
            assert cluster_of(fed, n) == "east"
            fed.delete_container(n)
        # A pin to it is refused clearly.
        r = requests.put(f"{url}/{uniq('pin')}", headers={**h, "X-Container-Attr-Cluster": "west"})
        assert r.status_code == 503 and "offline" in r.text
    finally:
        clusters["west"].restart()
    assert wait_until(lambda: west_state() == "online")
    assert wait_until(lambda: requests.get(f"{url}/{on_west}/o", headers=h).status_code == 200)
    assert fed.get_object(on_west, "o")[1] == b"kept"
    r = requests.get(url + "?format=json", headers=h)
    assert r.status_code == 200 and {on_east, on_west} <= {e["name"] for e in r.json()}
    assert wait_until(lambda: west_state(partial_proxy) == "online")
    r = requests.get(purl + "?format=json", headers=ph)
    assert r.status_code == 200 and "x-federation-partial" not in r.headers
    assert {on_east, on_west} <= {e["name"] for e in r.json()}
    for n, o in ((on_east, "o"), (on_west, "o")):
        fed.delete_object(n, o)
        fed.delete_container(n)

"""The Glance edge cache in front of a real central Glance, driven by the real `glance`
CLI, openstacksdk and raw HTTP: online, with the central stopped, and after restarts."""

import concurrent.futures as cf
import hashlib
import json
import os
import subprocess
import time

import pytest
import requests

import peers


@pytest.fixture(scope="module")
def central(workdir):
    g = peers.GlanceCentral(workdir / "glance-central")
    g.start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def edge_binary():
    return peers.cargo_bin("glance-edge-cache")


@pytest.fixture(scope="module")
def edge(workdir, central, edge_binary):
    e = peers.GlanceEdge(workdir / "glance-edge", central.endpoint)
    e.start(edge_binary)
    yield e
    e.stop()


def glance(url, *args, check=True):
    return subprocess.run(
        [str(peers.VENV_BIN / "glance"), "--os-image-url", url, "--os-auth-token", "noauth",
         "--os-image-api-version", "2", *args],
        capture_output=True, text=True, check=check, timeout=120,
    )


def upload(central_url, path, name, disk_format, **props):
    out = glance(central_url, "image-create", "--name", name, "--disk-format", disk_format,
                 "--container-format", "bare", "--visibility", "public", "--file", str(path),
                 *[a for k, v in props.items() for a in ("--property", f"{k}={v}")])
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 2 and cells[1] == "id":
            return cells[2]
    raise AssertionError(out.stdout + out.stderr)


@pytest.fixture(scope="module")
def images(tmp_path_factory, central):
    """A real qcow2 (made with qemu-img) and raw images of tens of MiB, on the central."""
    d = tmp_path_factory.mktemp("images")
    raw_src = d / "seed.raw"
    raw_src.write_bytes(os.urandom(3 * 1024 * 1024))
    qcow = d / "small.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw_src), str(qcow)], check=True)
    out = {}
    out["qcow2"] = (upload(central.endpoint, qcow, "cirros-ish", "qcow2", os_distro="cirros"), qcow.read_bytes())
    for name, mib in (("raw-a", 24), ("raw-b", 20), ("raw-c", 16), ("raw-d", 12)):
        p = d / f"{name}.raw"
        p.write_bytes(os.urandom(mib * 1024 * 1024))
        out[name] = (upload(central.endpoint, p, name, "raw", os_distro="ubuntu"), p.read_bytes())
    return out


def md5(b):
    return hashlib.md5(b).hexdigest()


def test_versions_and_schemas(edge):
    r = requests.get(edge.endpoint + "/")
    assert r.status_code == 300
    assert all(l["href"] == f"http://127.0.0.1:{edge.port}/v2/" for v in r.json()["versions"] for l in v["links"])
    assert requests.get(edge.endpoint + "/versions").status_code == 200
    s = requests.get(edge.endpoint + "/v2/schemas/image")
    assert s.status_code == 200 and s.json()["name"] == "image"


def test_list_show_download_with_the_glance_cli(edge, images, tmp_path):
    out = glance(edge.endpoint, "image-list", "--sort-key", "name", "--sort-dir", "asc").stdout
    names = [c.split("|")[2].strip() for c in out.splitlines() if c.startswith("| ") and "ID" not in c]
    assert names == sorted(k if k != "qcow2" else "cirros-ish" for k in images)
    out = glance(edge.endpoint, "image-list", "--property-filter", "os_distro=cirros").stdout
    assert images["qcow2"][0] in out and images["raw-a"][0] not in out
    img_id, data = images["qcow2"]
    show = glance(edge.endpoint, "image-show", img_id).stdout
    assert md5(data) in show
    target = tmp_path / "down.qcow2"
    glance(edge.endpoint, "image-download", "--file", str(target), img_id)
    assert target.read_bytes() == data
    # qemu-img agrees it is still a qcow2.
    info = subprocess.run(["qemu-img", "info", "--output=json", str(target)], capture_output=True, text=True, check=True)
    assert json.loads(info.stdout)["format"] == "qcow2"


def test_paging_filters_sort_over_http(edge, images):
    r = requests.get(edge.endpoint + "/v2/images", params={"limit": 2, "sort": "name:asc"})
    body = r.json()
    assert len(body["images"]) == 2 and "next" in body
    seen = [i["name"] for i in body["images"]]
    while "next" in body:
        body = requests.get(edge.endpoint + body["next"]).json()
        seen += [i["name"] for i in body["images"]]
    assert seen == sorted(seen) and len(seen) == len(images)
    assert requests.get(edge.endpoint + "/v2/images", params={"sort_key": "colour"}).status_code == 400
    assert requests.get(edge.endpoint + "/v2/images/not-a-uuid").status_code == 404
    assert requests.get(edge.endpoint + "/v2/images/00000000-0000-4000-8000-000000000000").status_code == 404


def test_openstacksdk(edge, images):
    import openstack

    conn = openstack.connect(auth_type="none", image_endpoint_override=edge.endpoint,
                             load_yaml_config=False, load_envvars=False)
    listed = {i.id for i in conn.image.images()}
    assert {v[0] for v in images.values()} <= listed
    img_id, data = images["raw-d"]
    img = conn.image.get_image(img_id)
    assert img.checksum == md5(data)
    got = conn.image.download_image(img, stream=False)
    assert got.content == data


def test_ranges(edge, images):
    img_id, data = images["raw-c"]
    url = f"{edge.endpoint}/v2/images/{img_id}/file"
    # A range on a miss, then ranges on the hit.
    for _ in range(2):
        r = requests.get(url, headers={"Range": "bytes=100-1099"})
        assert r.status_code == 206
        assert r.content == data[100:1100]
        assert r.headers["Content-Range"] == f"bytes 100-1099/{len(data)}"
        assert r.headers["Content-MD5"] == md5(data)
    r = requests.get(url, headers={"Range": "bytes=-10"})
    assert (r.status_code, r.content) == (206, data[-10:])
    r = requests.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"
    r = requests.get(url)
    assert r.status_code == 200 and r.content == data and r.headers["Content-MD5"] == md5(data)


def test_concurrent_downloads_make_one_upstream_fetch(edge, central, images):
    img_id, data = images["raw-a"]
    before = central.requests_for(f"/v2/images/{img_id}/file")

    def get(_):
        r = requests.get(f"{edge.endpoint}/v2/images/{img_id}/file", timeout=120)
        return r.status_code, hashlib.sha256(r.content).hexdigest()

    with cf.ThreadPoolExecutor(20) as ex:
        results = list(ex.map(get, range(20)))
    assert results == [(200, hashlib.sha256(data).hexdigest())] * 20
    assert peers.settled_count(lambda: central.requests_for(f"/v2/images/{img_id}/file") - before) == 1


def test_offline_reads_work_and_writes_are_refused(edge, central, images):
    cached_id, cached = images["raw-a"]
    uncached_id, _ = images["raw-b"]
    qcow_id, qcow = images["qcow2"]
    # Warm metadata for every image (listing) and data for raw-a and the qcow2 (earlier tests).
    requests.get(edge.endpoint + "/v2/images").raise_for_status()
    central.stop()
    try:
        r = requests.get(edge.endpoint + "/v2/images", params={"sort": "name:asc"})
        assert r.status_code == 200 and r.headers.get("x-edge-stale") == "true"
        assert [i["name"] for i in r.json()["images"]] == sorted(i["name"] for i in r.json()["images"])
        assert len(r.json()["images"]) == len(images)
        r = requests.get(edge.endpoint + "/v2/images", params={"os_distro": "cirros"})
        assert [i["id"] for i in r.json()["images"]] == [qcow_id]
        out = glance(edge.endpoint, "image-show", cached_id).stdout
        assert md5(cached) in out
        r = requests.get(f"{edge.endpoint}/v2/images/{cached_id}/file")
        assert r.status_code == 200 and r.content == cached
        r = requests.get(f"{edge.endpoint}/v2/images/{qcow_id}/file", headers={"Range": "bytes=0-3"})
        assert (r.status_code, r.content) == (206, qcow[:4])
        r = requests.get(f"{edge.endpoint}/v2/images/{uncached_id}/file")
        assert r.status_code == 503
        assert "unreachable" in r.text
        r = requests.post(edge.endpoint + "/v2/images", json={"name": "new", "disk_format": "raw", "container_format": "bare"})
        assert r.status_code == 503 and "unreachable" in r.text
        r = requests.delete(f"{edge.endpoint}/v2/images/{cached_id}")
        assert r.status_code == 503
        health = requests.get(edge.endpoint + "/healthcheck").json()
        assert health["central"]["reachable"] is False
    finally:
        central.start()
    # Back online: fresh answers and writes go through.
    r = requests.get(f"{edge.endpoint}/v2/images/{uncached_id}")
    assert r.status_code == 200 and "x-edge-stale" not in r.headers
    assert requests.get(edge.endpoint + "/healthcheck").json()["central"]["reachable"] is True
    r = requests.post(edge.endpoint + "/v2/images", json={"name": "made-via-edge", "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201
    new_id = r.json()["id"]
    assert requests.delete(f"{edge.endpoint}/v2/images/{new_id}").status_code == 204
    assert requests.get(f"{central.endpoint}/v2/images/{new_id}").status_code == 404


def test_kill_9_during_a_fill_serves_only_verified_data(edge, central, images, edge_binary):
    img_id, data = images["raw-b"]
    url = f"{edge.endpoint}/v2/images/{img_id}/file"
    with requests.get(url, stream=True, timeout=60) as r:
        assert r.status_code == 200
        first = next(r.iter_content(64 * 1024))
        assert first == data[: len(first)]
        edge.kill9()
    incomplete = list((edge.cache_dir / "blobs" / "incomplete").iterdir())
    committed = list((edge.cache_dir / "blobs" / "images").iterdir())
    edge.start(edge_binary)
    assert "cache reconciled" in edge.log()
    assert list((edge.cache_dir / "blobs" / "incomplete").iterdir()) == []
    for f in (edge.cache_dir / "blobs" / "images").iterdir():
        # Anything still servable verifies against its image's checksum.
        rec = requests.get(f"{central.endpoint}/v2/images/{f.name}").json()
        assert md5(f.read_bytes()) == rec["checksum"], f
    r = requests.get(url)
    assert r.status_code == 200 and md5(r.content) == md5(data)
    assert incomplete or committed  # the kill really happened mid-fill or just after


def _small_image(central, data):
    r = requests.post(central.endpoint + "/v2/images",
                      json={"name": f"ranges-{len(data)}", "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    img = r.json()["id"]
    r = requests.put(f"{central.endpoint}/v2/images/{img}/file", data=data,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return img


def test_ranges_on_a_cached_image_answer_as_glance_does(edge, central):
    # Each Range asked of the real Glance and of the edge (the image cached there):
    # the same status, bytes, Content-Range and Content-MD5, and on an error the same
    # body in every format. Not compared: ranges Glance itself answers with a 500 or
    # parses past the grammar (`bytes=1-2-3`), and malformed ones it refuses with 416
    # where the edge ignores them (200, as RFC 9110 allows).
    data = os.urandom(1000)
    cases = [(_small_image(central, data), r) for r in (
        "bytes=0-0", "bytes=0-99", "bytes=-100", "bytes=-5000", "bytes=900-", "bytes=999-",
        "bytes=0-5000", "bytes= 0-9", "bytes=00-09",
        "bytes=1000-", "bytes=1000-2000", "bytes=500-100",
        "bytes=0-99,200-299", "bytes=0-99,50-",
        "Bytes=0-9", "bytes=0-18446744073709551616",
    )]
    cases = [(cases[0][0], r) for _, r in cases]
    empty = _small_image(central, b"")
    cases += [(empty, "bytes=0-9"), (empty, "bytes=0-")]
    s = requests.Session()
    s.headers.pop("Accept", None)
    for img in {i for i, _ in cases}:
        assert s.get(f"{edge.endpoint}/v2/images/{img}/file").status_code == 200
    wrong = []
    for img, rg in cases:
        for accept in (None, "application/json", "text/html"):
            headers = {"Range": rg, **({"Accept": accept} if accept else {})}
            got = []
            for base in (central.endpoint, edge.endpoint):
                r = s.get(f"{base}/v2/images/{img}/file", headers=headers)
                got.append((r.status_code, r.content,
                            r.headers.get("Content-Range") if r.status_code == 206 else None,
                            r.headers.get("Content-MD5") if r.ok else None))
            if got[0] != got[1]:
                wrong.append((rg, accept, got[0][0], got[0][1][:200], got[1][0], got[1][1][:200]))
    assert not wrong, "\n".join(map(repr, wrong))


@pytest.mark.parametrize("accept", [None, "*/*", "text/html", "application/json", "text/plain", "application/xml"])
def test_errors_look_like_glance(edge, central, accept):
    headers = {"Accept": accept} if accept else {}
    path = "/v2/images/00000000-0000-4000-8000-000000000000"
    # requests adds "Accept: */*" unless told otherwise; send exactly what we mean.
    s = requests.Session()
    s.headers.pop("Accept", None)
    theirs = s.get(central.endpoint + path, headers=headers)
    ours = s.get(edge.endpoint + path, headers=headers)
    assert ours.status_code == theirs.status_code == 404
    ct = lambda r: r.headers["Content-Type"].split(";")[0]
    assert ct(ours) == ct(theirs), (accept, theirs.text)
    assert "No image found with ID" in ours.text


def blob_bytes(edge):
    return sum(f.stat().st_size for f in (edge.cache_dir / "blobs" / "images").iterdir())


def test_budget_holds_while_large_images_are_pulled(workdir, central, images, edge_binary):
    budget = 40 * 1024 * 1024
    e = peers.GlanceEdge(workdir / "glance-edge-budget", central.endpoint, max_cache_bytes=budget)
    e.start(edge_binary)
    try:
        pulled = ["raw-a", "raw-b", "raw-c"]  # 24, 20 and 16 MiB: each over a third of 40
        for name in pulled:
            img_id, data = images[name]
            r = requests.get(f"{e.endpoint}/v2/images/{img_id}/file")
            assert r.status_code == 200 and md5(r.content) == md5(data)
            assert blob_bytes(e) <= budget, name
        cached = {c["image_id"] for c in requests.get(e.endpoint + "/v2/cache").json()["cached_images"]}
        # raw-a (least recently used) made room for raw-c; raw-b and raw-c fit together.
        assert cached == {images["raw-b"][0], images["raw-c"][0]}
        # Pin raw-c, then read raw-b so raw-c is the least recently used. Pulling raw-a
        # (24 MiB) must evict raw-b rather than the pinned raw-c: 16 + 24 = 40 fits.
        assert requests.put(f"{e.endpoint}/v2/cache/{images['raw-c'][0]}/pin").status_code == 204
        requests.get(f"{e.endpoint}/v2/images/{images['raw-b'][0]}/file").raise_for_status()
        r = requests.get(f"{e.endpoint}/v2/images/{images['raw-a'][0]}/file")
        assert md5(r.content) == md5(images["raw-a"][1])
        cached = {c["image_id"]: c for c in requests.get(e.endpoint + "/v2/cache").json()["cached_images"]}
        assert set(cached) == {images["raw-a"][0], images["raw-c"][0]}
        assert cached[images["raw-c"][0]]["pinned"] is True
        assert blob_bytes(e) <= budget
        # Now raw-b (20 MiB) cannot fit beside pinned raw-c and raw-a unless raw-a goes:
        # 16 + 20 = 36. raw-a is evicted; the pinned image never is.
        r = requests.get(f"{e.endpoint}/v2/images/{images['raw-b'][0]}/file")
        assert md5(r.content) == md5(images["raw-b"][1])
        cached = {c["image_id"] for c in requests.get(e.endpoint + "/v2/cache").json()["cached_images"]}
        assert cached == {images["raw-b"][0], images["raw-c"][0]}
        assert blob_bytes(e) <= budget
        # Larger than the budget: streamed through, verified, not cached.
        e2 = peers.GlanceEdge(workdir / "glance-edge-tiny", central.endpoint, max_cache_bytes=1024 * 1024)
        e2.start(edge_binary)
        try:
            img_id, data = images["raw-d"]
            r = requests.get(f"{e2.endpoint}/v2/images/{img_id}/file")
            assert r.status_code == 200 and md5(r.content) == md5(data)
            assert requests.get(e2.endpoint + "/v2/cache").json()["cached_images"] == []
        finally:
            e2.stop()
    finally:
        e.stop()


def cache_ids(out):
    return {c.split("|")[1].strip() for c in out.splitlines() if c.startswith("| ") and "ID" not in c}


def test_glance_cache_commands_work_against_the_edge(workdir, central, images, edge_binary):
    e = peers.GlanceEdge(workdir / "glance-edge-cacheapi", central.endpoint)
    e.start(edge_binary)
    try:
        a, b = images["raw-c"][0], images["raw-d"][0]
        glance(e.endpoint, "cache-queue", a)
        glance(e.endpoint, "cache-queue", b)
        deadline = time.time() + 60
        while time.time() < deadline:
            listed = glance(e.endpoint, "cache-list").stdout
            if cache_ids(listed) >= {a, b} and "queued" not in listed:
                break
            time.sleep(0.5)
        assert {a, b} <= cache_ids(listed), listed
        assert "cached" in listed
        # The log line is written after the cache records the image: wait for it too.
        deadline = time.time() + 30
        while "prefetch done: cached" not in e.log() and time.time() < deadline:
            time.sleep(0.2)
        assert "prefetch done: cached" in e.log()
        glance(e.endpoint, "cache-delete", a)
        assert cache_ids(glance(e.endpoint, "cache-list").stdout) == {b}
        glance(e.endpoint, "cache-clear", "--target", "cache")
        assert cache_ids(glance(e.endpoint, "cache-list").stdout) == set()
        # Prefetch by properties through the API.
        r = requests.post(e.endpoint + "/v2/cache/prefetch", json={"filters": {"os_distro": "cirros"}})
        assert r.status_code == 202 and r.json()["queued"] == [images["qcow2"][0]]
        deadline = time.time() + 90
        while time.time() < deadline and cache_ids(glance(e.endpoint, "cache-list").stdout) != {images["qcow2"][0]}:
            time.sleep(0.3)
        assert cache_ids(glance(e.endpoint, "cache-list").stdout) == {images["qcow2"][0]}
        assert requests.delete(e.endpoint + "/v2/cache", headers={"x-image-cache-clear-target": "bogus"}).status_code == 400
    finally:
        e.stop()


def test_prefetch_from_the_configuration(workdir, central, images, edge_binary):
    e = peers.GlanceEdge(workdir / "glance-edge-prefetch", central.endpoint,
                         extra_toml='prefetch = [{ properties = { os_distro = "ubuntu" } }]\n')
    e.start(edge_binary)
    try:
        want = {v[0] for k, v in images.items() if k != "qcow2"}
        deadline = time.time() + 90
        got = set()
        while time.time() < deadline:
            got = {c["image_id"] for c in requests.get(e.endpoint + "/v2/cache").json()["cached_images"]}
            if got == want:
                break
            time.sleep(0.5)
        assert got == want
        # Served from cache with the central gone.
        central.stop()
        try:
            img_id, data = images["raw-d"]
            r = requests.get(f"{e.endpoint}/v2/images/{img_id}/file")
            assert r.status_code == 200 and md5(r.content) == md5(data)
        finally:
            central.start()
    finally:
        e.stop()


def fetch(url: str) -> tuple[bool, bytes]:
    """GETs `url` whole: whether the body arrived complete (200, every byte its
    Content-Length announced, the connection not cut), and what arrived."""
    got = b""
    try:
        with requests.get(url, stream=True, timeout=60) as r:
            if r.status_code != 200:
                return False, got
            for piece in r.iter_content(256 * 1024):
                got += piece
            return len(got) == int(r.headers["Content-Length"]), got
    except requests.exceptions.RequestException:
        return False, got


def test_verification_follows_glanceclient(workdir, central, edge, edge_binary, tmp_path):
    """The edge checks the strongest hash an image names, as glanceclient does (the real
    client is the reference here): an image whose MD5 `checksum` is wrong (written into
    the central's own database) but whose SHA-512 multihash is right downloads with
    glanceclient and through the edge, and is cached; an edge configured with
    `verify = "all"` refuses it. Data corrupted in the central's file store fails both
    glanceclient and the edge, which never sends it complete nor caches it."""
    import sqlite3

    data = os.urandom(2 * 1024 * 1024 + 123)
    src = tmp_path / "verify.raw"
    src.write_bytes(data)
    md5_wrong = upload(central.endpoint, src, "verify-md5-wrong", "raw")
    corrupt = upload(central.endpoint, src, "verify-corrupt", "raw")
    strict = peers.GlanceEdge(workdir / "glance-edge-verify-all", central.endpoint,
                              extra_toml='verify = "all"\n')
    try:
        db = sqlite3.connect(central.base / "glance.sqlite")
        with db:
            db.execute("UPDATE images SET checksum = ? WHERE id = ?", ("0" * 32, md5_wrong))
        db.close()
        shown = requests.get(f"{central.endpoint}/v2/images/{md5_wrong}").json()
        assert shown["checksum"] == "0" * 32 and shown["os_hash_algo"] == "sha512"
        assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
        stored = central.base / "images" / corrupt
        blob = bytearray(stored.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        stored.write_bytes(bytes(blob))

        # The reference: glanceclient checks the multihash alone.
        out = tmp_path / "from-central"
        glance(central.endpoint, "image-download", "--file", str(out), md5_wrong)
        assert out.read_bytes() == data
        refused = glance(central.endpoint, "image-download", "--file", str(tmp_path / "x"), corrupt, check=False)
        assert refused.returncode != 0, refused.stdout
        assert "corrupt" in (refused.stdout + refused.stderr).lower(), refused.stderr

        # The edge (verify = "strongest", the default) serves and caches the first.
        out = tmp_path / "from-edge"
        glance(edge.endpoint, "image-download", "--file", str(out), md5_wrong)
        assert out.read_bytes() == data
        assert (edge.cache_dir / "blobs" / "images" / md5_wrong).exists()
        assert fetch(f"{edge.endpoint}/v2/images/{md5_wrong}/file") == (True, data)
        # ... and never the corrupt one: the connection fails before the last bytes.
        complete, got = fetch(f"{edge.endpoint}/v2/images/{corrupt}/file")
        assert not complete and len(got) < len(data), edge.log()
        refused = glance(edge.endpoint, "image-download", "--file", str(tmp_path / "y"), corrupt, check=False)
        assert refused.returncode != 0, refused.stdout
        assert not (edge.cache_dir / "blobs" / "images" / corrupt).exists()
        assert "sha512 mismatch" in edge.log()

        # An edge that checks every hash refuses the wrong MD5.
        strict.start(edge_binary)
        complete, got = fetch(f"{strict.endpoint}/v2/images/{md5_wrong}/file")
        assert not complete and len(got) < len(data), strict.log()
        assert not (strict.cache_dir / "blobs" / "images" / md5_wrong).exists()
        assert "md5 mismatch" in strict.log()
    finally:
        strict.stop()
        for i in (md5_wrong, corrupt):
            requests.delete(f"{central.endpoint}/v2/images/{i}")

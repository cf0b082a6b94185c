"""Bulk delete (`POST ?bulk-delete`) and bulk upload (`PUT ?extract-archive`) through
the federation, with the real `swift` CLI, curl and raw HTTP, compared with what one
real Swift cluster running the bulk middleware answers.

The module starts its own federation (two clusters with the plain pipeline, no bulk
middleware: the proxy does bulk deletes itself) and a reference cluster with the SAIO
pipeline, so that `swift delete --all` empties an account no other test uses (the upload
tests run after it and create containers with tags in their names)."""

import gzip
import http.client
import io
import subprocess
import tarfile
import time
import urllib.parse
import uuid

import pytest
import requests
from swiftclient import client as swc
from swiftclient.exceptions import ClientException

import peers

USER, KEY = "test:tester", "testing"


def conn(auth_url):
    return swc.Connection(authurl=auth_url, user=USER, key=KEY, retries=0)


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def bulk_fed(workdir, proxy_binary):
    """Two clusters without the bulk middleware and a proxy in front of them."""
    cs = peers.start_clusters(workdir / "bulk-swift", ["east", "west"])
    p = peers.FederationProxy(workdir / "bulk-proxy", cs)
    try:
        p.start(proxy_binary)
        yield p, {c.name: c for c in cs}
    finally:
        p.stop()
        for c in cs:
            c.teardown()


@pytest.fixture(scope="module")
def reference(workdir):
    """One real cluster with the bulk middleware (the SAIO pipeline)."""
    (c,) = peers.start_clusters(workdir / "bulk-ref", ["ref"], full_pipeline=True)
    yield c
    c.teardown()


def pinned(cluster):
    return {"X-Container-Attr-Cluster": cluster} if cluster else {}


def cli(proxy, *args):
    swift = [str(peers.VENV_BIN / "swift"), "-A", proxy.auth_url, "-U", USER, "-K", KEY]
    return subprocess.run(swift + list(args), capture_output=True, text=True, timeout=120)


def holds(cluster, container):
    try:
        conn(cluster.auth_url).head_container(container)
        return True
    except ClientException as e:
        assert e.http_status == 404, e
        return False


def has_record(fed, container, cluster):
    """Whether the proxy still records `container` (on `cluster`): creating it again
    pinned to the other cluster is refused while a record says where it lives."""
    other = {"east": "west", "west": "east"}[cluster]
    try:
        fed.put_container(container, headers=pinned(other))
    except ClientException as e:
        assert e.http_status == 409, e
        return True
    fed.delete_container(container)
    return False


def test_swift_delete_of_a_container_with_50_objects(bulk_fed):
    proxy, clusters = bulk_fed
    fed = conn(proxy.auth_url)
    # The federation holds containers on both clusters; the one deleted is on west.
    keep, gone = uniq("keep"), uniq("gone")
    fed.put_container(keep, headers=pinned("east"))
    fed.put_object(keep, "k", b"k")
    fed.put_container(gone, headers=pinned("west"))
    names = [f"obj {i:02d}/ü" for i in range(50)]
    for n in names:
        fed.put_object(gone, n, b"x")
    # More than 20 objects and bulk_delete in /info: the CLI deletes in bulk.
    assert "bulk_delete" in fed.get_capabilities()
    out = cli(proxy, "delete", gone)
    assert out.returncode == 0, out.stderr
    assert "Account POST failed" not in out.stderr
    printed = set(out.stdout.splitlines())
    assert set(names) <= printed, out.stdout
    west = conn(clusters["west"].auth_url)
    with pytest.raises(ClientException) as e:
        west.get_container(gone)
    assert e.value.http_status == 404
    assert not holds(clusters["east"], gone)
    assert not has_record(fed, gone, "west")
    # Nothing else was touched.
    assert [o["name"] for o in fed.get_container(keep)[1]] == ["k"]
    assert cli(proxy, "delete", keep).returncode == 0


def test_swift_delete_all_empties_every_cluster(bulk_fed):
    proxy, clusters = bulk_fed
    fed = conn(proxy.auth_url)
    made = []
    for i, where in enumerate(["east", "west", "east", "west"]):
        c = uniq(f"all{i}")
        fed.put_container(c, headers=pinned(where))
        for j in range(25 if i < 2 else 3):
            fed.put_object(c, f"o{j}", b"x")
        made.append((c, where))
    out = cli(proxy, "delete", "--all")
    assert out.returncode == 0, out.stderr
    assert fed.get_account(full_listing=True)[1] == []
    for c in clusters.values():
        assert conn(c.auth_url).get_account(full_listing=True)[1] == [], c.name
    for c, where in made:
        assert not has_record(fed, c, where)


def layout(url, token, tag):
    """The same containers wherever: `full` (an object stays), `empty`, `mixed` with an
    object whose name needs quoting; on the federation `full` and `empty` on west,
    `mixed` on east."""
    s = requests.Session()
    s.headers["X-Auth-Token"] = token
    names = {k: f"{k}-{tag}" for k in ("full", "empty", "mixed")}
    for k, cluster in (("full", "west"), ("empty", "west"), ("mixed", "east")):
        r = s.put(f"{url}/{names[k]}", headers=pinned(cluster))
        assert r.status_code in (201, 202), r.text
    for path in (f"{names['full']}/stays", f"{names['mixed']}/a%20b", f"{names['mixed']}/c"):
        assert s.put(f"{url}/{path}", data=b"x").status_code == 201
    return names


def mixed_list(names):
    return (
        f"/{names['mixed']}/a%20b\n/{names['mixed']}/c\n/{names['mixed']}/missing\n"
        f"/nowhere-{uuid.uuid4().hex[:6]}/o\n/{names['full']}\n/{names['empty']}\n"
        f"/{names['mixed']}\n\n/x/%FF\n"
    )


def bulk(url, token, body, accept=None, content_type="text/plain"):
    headers = {"X-Auth-Token": token, "Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    r = requests.post(f"{url}?bulk-delete", data=body, headers=headers, timeout=60)
    # Swift may send whitespace before the result while it works.
    ctype = r.headers.get("Content-Type")
    return r.status_code, ctype, peers.errors_in_order(ctype, r.text.lstrip(" \r\n"))


def endpoints(bulk_fed, reference):
    proxy, _ = bulk_fed
    out = []
    for auth in (reference.auth_url, proxy.auth_url):
        url, token = conn(auth).get_auth()
        out.append((url, token))
    return out


@pytest.mark.parametrize("accept", [None, "application/json", "application/xml", "text/xml"])
def test_bulk_delete_answers_as_a_real_cluster(bulk_fed, reference, accept):
    answers = []
    for url, token in endpoints(bulk_fed, reference):
        tag = uuid.uuid4().hex[:6]
        names = layout(url, token, tag)
        status, ctype, text = bulk(url, token, mixed_list(names), accept)
        # Names differ by tag only; compare with the tag taken out.
        answers.append((status, ctype, text.replace(tag, "TAG")))
        s = {"X-Auth-Token": token}
        assert requests.head(f"{url}/{names['mixed']}", headers=s).status_code == 404
        assert requests.head(f"{url}/{names['empty']}", headers=s).status_code == 404
        assert requests.head(f"{url}/{names['full']}/stays", headers=s).status_code == 200
        requests.delete(f"{url}/{names['full']}/stays", headers=s)
        requests.delete(f"{url}/{names['full']}", headers=s)
    ref, fed = answers
    assert ref[0] == 200 and "409 Conflict" in ref[2], ref
    assert fed == ref


@pytest.mark.parametrize("case", ["not-acceptable", "json-list", "empty", "too-many", "long-name",
                                  "no-token", "account-item"])
def test_bulk_delete_refusals_match_a_real_cluster(bulk_fed, reference, case):
    answers = []
    for url, token in endpoints(bulk_fed, reference):
        accept, ctype, body = "application/json", "text/plain", "/c/o\n"
        if case == "not-acceptable":
            accept = "image/png"
        elif case == "json-list":
            ctype = "application/json"
        elif case == "empty":
            body = ""
        elif case == "too-many":
            body = "/c/o\n" * 10001
        elif case == "long-name":
            body = "/c/" + "o" * 2600 + "\n"
        elif case == "no-token":
            token = "AUTH_tkbogus"
        elif case == "account-item":
            body = "/\n//\n"  # names no container: a DELETE of the account itself
        answers.append(bulk(url, token, body, accept, ctype))
    ref, fed = answers
    assert ref[0] == 200, ref
    assert fed == ref


def test_bulk_delete_without_a_length_matches_a_real_cluster(bulk_fed, reference):
    answers = []
    for url, token in endpoints(bulk_fed, reference):
        u = urllib.parse.urlsplit(url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        c.putrequest("POST", f"{u.path}?bulk-delete")
        c.putheader("X-Auth-Token", token)
        c.putheader("Accept", "application/json")
        c.endheaders()
        r = c.getresponse()
        answers.append((r.status, r.getheader("Content-Type"), r.read().decode().lstrip()))
        c.close()
    ref, fed = answers
    assert "411 Length Required" in ref[2], ref
    assert fed == ref


def test_bulk_delete_with_expect_100_continue(bulk_fed, reference, tmp_path):
    """curl sends `Expect: 100-continue` with a list over 1 KiB: the 100 must come before
    any answer, or curl holds the list back and nothing gets deleted."""
    answers = []
    for url, token in endpoints(bulk_fed, reference):
        tag = uuid.uuid4().hex[:6]
        names = layout(url, token, tag)
        lst = tmp_path / f"list-{tag}"
        lst.write_text(mixed_list(names) + "".join(f"/nowhere/o{i:04d}\n" for i in range(200)))
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "30", "-X", "POST", "--data-binary", f"@{lst}",
             "-H", "Expect: 100-continue", "-H", "Content-Type: text/plain",
             "-H", "Accept: application/json", "-H", f"X-Auth-Token: {token}",
             f"{url}?bulk-delete"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        answers.append(out.stdout.strip().replace(tag, "TAG"))
        s = {"X-Auth-Token": token}
        requests.delete(f"{url}/{names['full']}/stays", headers=s)
        requests.delete(f"{url}/{names['full']}", headers=s)
    ref, fed = answers
    assert '"Number Deleted": 4' in ref, ref
    assert fed == ref


# ----- bulk upload (`PUT ?extract-archive`) ------------------------------------------------
# python-swiftclient has no option for it (`swift upload` uploads files one by one): raw
# HTTP with requests, and curl for `Expect: 100-continue`.


def make_tar(files, comp=""):
    """A pax archive (GNU tar's default format) of (name, bytes or None for a directory,
    pax records) entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:" + comp, format=tarfile.PAX_FORMAT) as t:
        for name, data, *pax in files:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
            elif data == "symlink":
                info.type, info.linkname, data = tarfile.SYMTYPE, "elsewhere", None
            else:
                info.size = len(data)
            if pax:
                info.pax_headers = pax[0]
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def extract(url, token, path, body, fmt="tar", accept=None, headers=None):
    h = dict(headers or {})
    if token:
        h["X-Auth-Token"] = token
    if accept:
        h["Accept"] = accept
    r = requests.put(f"{url}{path}?extract-archive={fmt}", data=body, headers=h, timeout=120)
    ctype = r.headers.get("Content-Type")
    # Swift may send whitespace (or the XML declaration) before the result while it works.
    text = r.text.lstrip(" \r\n")
    return r.status_code, ctype, peers.errors_in_order(ctype, text)


def both(bulk_fed, reference, make, check=None):
    """`make(url, token, tag)` → answer, on the reference cluster then the federation;
    answers with the tag taken out, and `check(url, token, tag)` run on each."""
    answers = []
    for url, token in endpoints(bulk_fed, reference):
        tag = uuid.uuid4().hex[:6]
        status, ctype, text = make(url, token, tag)
        answers.append((status, ctype, text.replace(tag, "TAG")))
        if check:
            check(url, token, tag)
    return answers


def where_is(clusters, container):
    return [name for name, c in clusters.items() if holds(c, container)]


@pytest.mark.parametrize("accept", [None, "application/json", "application/xml", "text/xml"])
def test_extract_account_level_places_new_containers(bulk_fed, reference, accept):
    proxy, clusters = bulk_fed
    made = {}

    def make(url, token, tag):
        names = [f"x{i}-{tag}" for i in range(6)]
        made[url] = names
        files = [(f"{c}/dir/f{i}.txt", f"{c}-{i}".encode()) for c in names for i in range(2)]
        files += [("top-level-file", b"ignored"), (f"{names[0]}/sub", None),
                  (f"{names[0]}/link", "symlink"), (f"./{names[1]}/dotted", b"d")]
        return extract(url, token, "", make_tar(files), accept=accept)

    ref, fed = both(bulk_fed, reference, make)
    assert ref[0] == 200 and "201 Created" in ref[2] and "13" in ref[2], ref
    assert fed == ref
    f = conn(proxy.auth_url)
    (names,) = [v for k, v in made.items() if k.startswith(proxy.endpoint)]
    for c in names:
        on = where_is(clusters, c)
        assert len(on) == 1, (c, on)  # placed on exactly one cluster, and recorded there
        assert has_record(f, c, on[0])
        listing = [o["name"] for o in f.get_container(c)[1]]
        extra = ["dotted"] if c == names[1] else []
        assert listing == sorted(["dir/f0.txt", "dir/f1.txt"] + extra), listing
        assert f.get_object(c, "dir/f1.txt")[1] == f"{c}-1".encode()


@pytest.mark.parametrize("comp", ["tar", "tar.gz", "tar.bz2"])
def test_extract_container_level_with_prefix_and_pax_metadata(bulk_fed, reference, comp):
    heads = []
    pax = {"SCHILY.xattr.user.meta.color": "blü", "LIBARCHIVE.xattr.user.meta.Size": "L",
           "SCHILY.xattr.user.mime_type": "application/x-stackfed",
           "SCHILY.xattr.user.other": "ignored", "SCHILY.xattr.security.selinux": "no"}

    def make(url, token, tag):
        s = {"X-Auth-Token": token}
        # An existing container (on west through the federation).
        assert requests.put(f"{url}/pre-{tag}", headers={**s, **pinned("west")}).status_code == 201
        files = [("a.txt", b"aaa", pax), ("d/b.png", b"bb"), ("./c.json", b"{}"), ("d", None)]
        body = make_tar(files, {"tar": "", "tar.gz": "gz", "tar.bz2": "bz2"}[comp])
        return extract(url, token, f"/pre-{tag}/in/side/", body, fmt=comp,
                       accept="application/json",
                       headers={"X-Object-Meta-Batch": "7", "Content-Type": "text/x-ignored",
                                "X-Delete-After": "86400"})

    def check(url, token, tag):
        s = {"X-Auth-Token": token}
        got = {}
        for o in ("a.txt", "d/b.png", "c.json"):
            r = requests.head(f"{url}/pre-{tag}/in/side/{o}", headers=s)
            assert r.status_code == 200, (o, r.status_code)
            got[o] = {k: v for k, v in r.headers.items()
                      if k.lower().startswith("x-object-meta-")
                      or k.lower() in ("content-type", "content-length", "etag")}
            got[o]["has-delete-at"] = "X-Delete-At" in r.headers
        heads.append(got)

    ref, fed = both(bulk_fed, reference, make, check)
    assert '"Number Files Created": 3' in ref[2], ref
    assert fed == ref
    assert heads[0] == heads[1]
    assert heads[0]["a.txt"]["Content-Type"] == "application/x-stackfed"
    assert heads[0]["d/b.png"]["Content-Type"] == "image/png"


def truncated_in_data(tag):
    return make_tar([(f"t-{tag}/small", b"1"), (f"t-{tag}/big", b"2" * 5000)])[:3000]


def huge_header(tag):
    """A header claiming a file over Swift's 5 GiB limit, with no data after it."""
    info = tarfile.TarInfo(f"h-{tag}/huge")
    info.size = 6 * 1024 ** 3
    return info.tobuf(tarfile.USTAR_FORMAT)


REFUSALS = {
    "garbage": lambda tag: ("", "tar", b"garbage" * 100),
    "empty": lambda tag: ("", "tar", b""),
    "zeros": lambda tag: ("", "tar", b"\0" * 1024),
    "short": lambda tag: ("", "tar", b"x" * 100),
    "bad-checksum": lambda tag: ("", "tar", make_tar([(f"k-{tag}/a", b"1")])[:148] + b"0000001\0"
                                 + make_tar([(f"k-{tag}/a", b"1")])[156:]),
    "truncated-in-data": lambda tag: ("", "tar", truncated_in_data(tag)),
    "truncated-padding": lambda tag: ("", "tar", make_tar([(f"p-{tag}/a", b"1")])[:700]),
    "junk-after-a-file": lambda tag: ("", "tar", make_tar([(f"j-{tag}/a", b"1")])[:1024]
                                      + b"junk" * 200),
    "not-gzip": lambda tag: ("", "tar.gz", b"garbage"),
    "not-bzip2": lambda tag: ("", "tar.bz2", b"garbage" * 100),
    "gzip-of-garbage": lambda tag: ("", "tar.gz", gzip.compress(b"garbage" * 100)),
    "corrupt-gzip": lambda tag: ("", "tar.gz", gzip.compress(make_tar(
        [(f"g-{tag}/a", b"1" * 3000)]))[:40] + b"\xff" * 300),
    "unknown-format": lambda tag: (f"/u-{tag}", "zip", b"whatever"),
    "too-large": lambda tag: ("", "tar", huge_header(tag)),
    "names": lambda tag: ("", "tar", make_tar([
        ("c" * 257 + "/a", b"1"), (f"n-{tag}/" + "o" * 1025, b"2"),
        (f"n-{tag}/\udcff", b"3"), (f"/n-{tag}//y", b"5"), (f"n-{tag}/ok", b"6")])),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_extract_refusals_match_a_real_cluster(bulk_fed, reference, case):
    def make(url, token, tag):
        path, fmt, body = REFUSALS[case](tag)
        return extract(url, token, path, body, fmt=fmt, accept="application/json")

    def check(url, token, tag):
        if case == "truncated-in-data":
            # The file cut short is not stored, not even in part.
            r = requests.head(f"{url}/t-{tag}/big", headers={"X-Auth-Token": token})
            assert r.status_code == 404, r.status_code

    ref, fed = both(bulk_fed, reference, make, check)
    assert fed == ref


@pytest.mark.parametrize("case", ["not-acceptable", "no-token", "bogus-token", "plain"])
def test_extract_answers_by_caller_and_accept(bulk_fed, reference, case):
    def make(url, token, tag):
        accept = {"not-acceptable": "image/png", "plain": "text/plain"}.get(case)
        token = {"no-token": None, "bogus-token": "AUTH_tkbogus"}.get(case, token)
        body = make_tar([(f"a-{tag}/x", b"1"), (f"a-{tag}/y", b"2")])
        return extract(url, token, "", body, accept=accept)

    ref, fed = both(bulk_fed, reference, make)
    assert fed == ref


def test_extract_as_a_read_only_user(bulk_fed, reference):
    """tester3 has no admin role on `test`: it may read a container whose ACL says so, but
    not write to it nor create containers; every file fails with the cluster's 403."""
    def make(url, token, tag):
        s = {"X-Auth-Token": token}
        r = requests.put(f"{url}/ro-{tag}", headers={**s, "X-Container-Read": "test:tester3"})
        assert r.status_code == 201
        auth = reference.auth_url if url.startswith(reference.endpoint) else bulk_fed[0].auth_url
        _, ro = swc.Connection(authurl=auth, user="test:tester3", key="testing3",
                               retries=0).get_auth()
        body = make_tar([(f"ro-{tag}/a", b"1"), (f"ro-{tag}/b", b"2"), (f"new-{tag}/c", b"3")])
        return extract(url, ro, "", body, accept="application/json")

    def check(url, token, tag):
        s = {"X-Auth-Token": token}
        assert requests.get(f"{url}/ro-{tag}", headers=s).text == ""
        assert requests.head(f"{url}/new-{tag}", headers=s).status_code == 404

    ref, fed = both(bulk_fed, reference, make, check)
    assert "403 Forbidden" in ref[2], ref
    assert fed == ref


def test_extract_with_curl_and_expect_100_continue(bulk_fed, reference, tmp_path):
    """curl -T sends `Expect: 100-continue`: the 100 must come before any answer."""
    def make(url, token, tag):
        f = tmp_path / f"up-{tag}.tar.gz"
        f.write_bytes(make_tar([(f"cu-{tag}/o{i}", b"x" * 4096) for i in range(20)], "gz"))
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "60", "-T", str(f), "-H", "Expect: 100-continue",
             "-H", "Accept: application/json", "-H", f"X-Auth-Token: {token}",
             "-w", "\n%{http_code}", f"{url}?extract-archive=tar.gz"],
            capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stderr
        text, _, code = out.stdout.strip().rpartition("\n")
        return int(code), "application/json", peers.errors_in_order("application/json", text.strip())

    def check(url, token, tag):
        r = requests.get(f"{url}/cu-{tag}", headers={"X-Auth-Token": token})
        assert len(r.text.split()) == 20

    ref, fed = both(bulk_fed, reference, make, check)
    assert '"Number Files Created": 20' in ref[2], ref
    assert fed == ref


def test_extract_of_a_client_gone_mid_archive_leaves_no_partial_object(bulk_fed):
    proxy, clusters = bulk_fed
    url, token = conn(proxy.auth_url).get_auth()
    tag = uuid.uuid4().hex[:6]
    body = make_tar([(f"gone-{tag}/whole", b"w"), (f"gone-{tag}/cut", b"c" * 200_000)])
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.putrequest("PUT", f"{u.path}?extract-archive=tar")
    c.putheader("X-Auth-Token", token)
    c.putheader("Content-Length", str(len(body)))
    c.endheaders()
    c.send(body[:100_000])  # inside the second file's data, then gone
    c.close()
    f = conn(proxy.auth_url)
    # The proxy notices the client is gone and stops; wait for the first file (a generous
    # deadline: 10 s was tight on a loaded 2-core machine), then a moment more in which
    # the cut one must not appear.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            names = [o["name"] for o in f.get_container(f"gone-{tag}")[1]]
        except ClientException:
            names = None
        if names == ["whole"]:
            break
        time.sleep(0.2)
    time.sleep(1)
    assert [o["name"] for o in f.get_container(f"gone-{tag}")[1]] == ["whole"]
    with pytest.raises(ClientException) as e:
        f.head_object(f"gone-{tag}", "cut")
    assert e.value.http_status == 404


def test_info_advertises_bulk_upload(bulk_fed, reference):
    proxy, _ = bulk_fed
    ref = conn(reference.auth_url).get_capabilities()["bulk_upload"]
    assert conn(proxy.auth_url).get_capabilities()["bulk_upload"] == ref

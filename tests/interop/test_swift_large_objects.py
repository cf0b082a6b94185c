"""Large objects whose parts live on another cluster than their manifest, through the
federation proxy (manifest container on east, segment container on west, both non-empty
so neither can move), against the SAME requests on one real Swift cluster (the
reference: both containers on east). Every expected value comes from the reference.

Names differ between the two sides (both share the account on east), so answers are
compared with the container names replaced by <man> and <segs>."""

import hashlib
import json
import re
import uuid
from urllib.parse import quote

import pytest
import requests
from swiftclient import client as swc

import peers

SEG = [bytes([65 + i]) * (1000 + 37 * i) for i in range(3)]


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


CREATED = []


@pytest.fixture(autouse=True)
def cleanup():
    yield
    while CREATED:
        side, name = CREATED.pop()
        listing = side.req("GET", f"{name}?format=json")
        for o in (listing.json() if listing.status_code == 200 else []):
            side.req("DELETE", f"{name}/{quote(o['name'])}")
        side.req("DELETE", name)


class Side:
    def __init__(self, auth_url, man_pin, seg_pin, user="test:tester", key="testing"):
        conn = swc.Connection(authurl=auth_url, user=user, key=key, retries=0)
        self.auth_url = auth_url
        self.url, self.token = conn.get_auth()
        self.pins = {"man": man_pin, "segs": seg_pin}
        self.names = {}

    def req(self, method, path, headers=None, **kw):
        h = {"X-Auth-Token": self.token}
        h.update(headers or {})
        return requests.request(method, f"{self.url}/{path}", headers=h, allow_redirects=False, **kw)

    def setup(self, tag, man_headers=None):
        """Two non-empty containers: <man> (with a filler) and <segs> (with the segments)."""
        for role in ("man", "segs"):
            name = uniq(f"{tag}-{role}")
            h = {"X-Container-Attr-Cluster": self.pins[role]} if self.pins[role] else {}
            if role == "man":
                h.update(man_headers or {})
            assert self.req("PUT", name, h).status_code in (201, 202)
            CREATED.append((self, name))
            self.names[role] = name
        assert self.req("PUT", f"{self.man}/filler", data=b"f").status_code == 201
        for i, data in enumerate(SEG):
            assert self.req("PUT", f"{self.segs}/s{i}", data=data).status_code == 201
        return self.man, self.segs

    @property
    def man(self):
        return self.names["man"]

    @property
    def segs(self):
        return self.names["segs"]

    def anon(self, text):
        """Container names replaced, so both sides compare."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return text.replace(self.man, "<man>").replace(self.segs, "<segs>")

    def slo(self, name="slo", entries=None, headers=None, query="multipart-manifest=put"):
        if entries is None:
            entries = [{"path": f"/{self.segs}/s{i}"} for i in range(len(SEG))]
        return self.req("PUT", f"{self.man}/{name}?{query}", headers or {},
                        data=json.dumps(entries).encode())


HEADERS = ("etag", "content-length", "content-type", "x-static-large-object", "accept-ranges",
           "content-range", "x-parts-count", "x-object-manifest")


def shape(r, side, body=True):
    """What the reference and the proxy must agree on for one answer."""
    out = {"status": r.status_code}
    for h in HEADERS:
        if h in r.headers:
            v = r.headers[h]
            out[h] = side.anon(v) if h == "x-object-manifest" else v
    if body:
        out["body"] = hashlib.md5(r.content).hexdigest() if len(r.content) > 300 else side.anon(r.content)
    return out


@pytest.fixture
def sides(clusters, proxy):
    return (Side(clusters["east"].auth_url, None, None), Side(proxy.auth_url, "east", "west"))


def test_proxy_side_is_really_across_clusters(sides, clusters):
    ref, fed = sides
    fed.setup("check")
    east = Side(clusters["east"].auth_url, None, None)
    west = Side(clusters["west"].auth_url, None, None)
    assert east.req("HEAD", fed.man).status_code == 204
    assert west.req("HEAD", fed.segs).status_code == 204
    assert east.req("HEAD", fed.segs).status_code == 404


def test_slo_reads_as_on_one_cluster(sides):
    seen = []
    for side in sides:
        side.setup("slo")
        put = side.slo(headers={"Content-Type": "application/test"})
        assert put.status_code == 201, put.text
        answers = {"put": (put.status_code, put.headers.get("etag"))}
        head = side.req("HEAD", f"{side.man}/slo")
        answers["head"] = shape(head, side, body=False)
        answers["last-modified"] = head.headers["last-modified"]
        # The manifests differ (names, times): X-Manifest-Etag must be the stored one's MD5.
        stored = side.req("GET", f"{side.man}/slo?multipart-manifest=get").content
        answers["x-manifest-etag"] = head.headers.get("x-manifest-etag") == hashlib.md5(stored).hexdigest()
        answers["get"] = shape(side.req("GET", f"{side.man}/slo"), side)
        for rng in ("bytes=0-9", "bytes=990-1010", "bytes=-50", "bytes=2000-", "bytes=99999-",
                    "bytes=5-2", "Bytes=0-9", "bytes=10-99999999999999999999999"):
            answers[rng] = shape(side.req("GET", f"{side.man}/slo", {"Range": rng}), side)
        for n in ("1", "2", "3", "4", "0", "x"):
            answers[f"part {n}"] = shape(side.req("GET", f"{side.man}/slo?part-number={n}"), side)
            answers[f"head part {n}"] = shape(
                side.req("HEAD", f"{side.man}/slo?part-number={n}"), side, body=False)
        etag = answers["head"]["etag"]
        for name, h in {"if-match yes": {"If-Match": etag}, "if-match no": {"If-Match": '"nope"'},
                        "if-none-match": {"If-None-Match": etag},
                        "if-modified-since": {"If-Modified-Since": answers["last-modified"]},
                        "if-unmodified-since": {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:01 GMT"},
                        }.items():
            answers[name] = shape(side.req("GET", f"{side.man}/slo", h), side, body=False)
        seen.append(answers)
    for answers in seen:
        answers.pop("last-modified")
    ref, fed = seen
    assert ref["if-modified-since"]["status"] == 304 and ref["if-unmodified-since"]["status"] == 412
    assert ref["get"]["status"] == 200 and ref["head"]["x-static-large-object"] == "True"
    assert ref["head"]["content-length"] == str(sum(map(len, SEG)))
    for key in ref:
        assert fed[key] == ref[key], key


def test_slo_manifest_get_and_listings_are_swifts(sides):
    seen = []
    for side in sides:
        side.setup("man")
        assert side.slo(headers={"Content-Type": "text/plain; charset=utf-8"}).status_code == 201
        answers = {}
        r = side.req("GET", f"{side.man}/slo?multipart-manifest=get")
        stored = json.loads(r.content)
        answers["manifest"] = (r.status_code, r.headers.get("content-type"),
                               r.headers.get("x-static-large-object"),
                               r.headers.get("etag") == hashlib.md5(r.content).hexdigest(),
                               [{k: (side.anon(v) if k == "name" else v) for k, v in e.items()
                                 if k != "last_modified"} for e in stored],
                               sorted(stored[0]))
        r = side.req("GET", f"{side.man}/slo?multipart-manifest=get&format=raw")
        answers["raw"] = (r.status_code, r.headers.get("content-type"), side.anon(r.content),
                          r.headers.get("etag") == hashlib.md5(r.content).hexdigest())
        listing = side.req("GET", f"{side.man}?format=json").json()
        entry = [e for e in listing if e["name"] == "slo"][0]
        answers["listing"] = (sorted(entry), list(entry), entry["bytes"], entry["content_type"],
                              entry.get("slo_etag"))
        xml = side.req("GET", f"{side.man}?format=xml").text
        entry = re.search(r"<object><name>slo</name>.*?</object>", xml).group(0)
        answers["xml"] = re.sub(r"<(hash|last_modified)>[^<]*</\1>", "", entry), "stackfed" in xml
        answers["plain"] = side.req("GET", side.man).text
        seen.append(answers)
    ref, fed = seen
    assert ref["listing"][4] is not None, ref["listing"]
    for key in ref:
        assert fed[key] == ref[key], key


def test_slo_puts_are_refused_as_swift_refuses_them(sides):
    seen = []
    for side in sides:
        side.setup("bad")
        answers = {}
        cases = {
            "missing": [{"path": f"/{side.segs}/s0"}, {"path": f"/{side.segs}/nope"}],
            "size": [{"path": f"/{side.segs}/s0", "size_bytes": 5}, {"path": f"/{side.segs}/s1"}],
            "etag": [{"path": f"/{side.segs}/s0", "etag": "0" * 32}, {"path": f"/{side.segs}/s1"}],
            "range": [{"path": f"/{side.segs}/s0", "range": "5000-"}, {"path": f"/{side.segs}/s1"}],
            "not-object": [{"path": f"/{side.segs}"}, {"path": f"/{side.segs}/s1"}],
            "extra-key": [{"path": f"/{side.segs}/s0", "bogus": 1}, {"path": f"/{side.segs}/s1"}],
        }
        for name, entries in cases.items():
            r = side.slo(name, entries)
            answers[name] = (r.status_code, r.headers.get("content-type"), side.anon(r.content))
            r = side.slo(name, entries, {"Accept": "application/json"})
            answers[name + " json"] = (r.status_code, r.headers.get("content-type"), side.anon(r.content))
        r = side.slo("etag422", None, {"ETag": "0" * 32})
        answers["client etag"] = r.status_code
        r = side.req("PUT", f"{side.man}/notjson?multipart-manifest=put", data=b"{")
        answers["not json"] = (r.status_code, r.text)
        seen.append(answers)
    ref, fed = seen
    assert ref["missing"][0] == 400 and ref["client etag"] == 422
    for key in ref:
        assert fed[key] == ref[key], key


def test_ranged_and_nested_slos(sides):
    seen = []
    for side in sides:
        side.setup("nest")
        entries = [{"path": f"/{side.segs}/s0", "range": "10-19"},
                   {"path": f"/{side.segs}/s1", "range": "-5"},
                   {"path": f"/{side.segs}/s2"}]
        put = side.slo("inner", entries)
        assert put.status_code == 201, put.text
        # An SLO in <segs> whose segment is the SLO in <man> (back across clusters).
        put = side.req("PUT", f"{side.segs}/outer?multipart-manifest=put",
                       data=json.dumps([{"path": f"/{side.man}/inner"},
                                        {"path": f"/{side.segs}/s0", "range": "0-3"}]).encode())
        assert put.status_code == 201, put.text
        answers = {"put": put.headers.get("etag")}
        for name in (f"{side.man}/inner", f"{side.segs}/outer"):
            answers[side.anon(name)] = shape(side.req("GET", name), side)
            answers[side.anon(name) + " range"] = shape(
                side.req("GET", name, {"Range": "bytes=5-25"}), side)
        r = side.req("GET", f"{side.segs}/outer?multipart-manifest=get")
        answers["sub_slo"] = [e.get("sub_slo") for e in r.json()]
        seen.append(answers)
    ref, fed = seen
    assert ref["sub_slo"] == [True, None]
    for key in ref:
        assert fed[key] == ref[key], key


def test_slo_delete_removes_segments_on_every_cluster(sides):
    seen = []
    for side in sides:
        side.setup("del")
        assert side.slo().status_code == 201
        answers = {}
        r = side.req("DELETE", f"{side.man}/slo?multipart-manifest=delete",
                     {"Accept": "application/json"})
        answers["delete"] = (r.status_code, r.headers.get("content-type"), r.json())
        answers["after"] = [side.req("HEAD", p).status_code
                            for p in (f"{side.man}/slo", f"{side.segs}/s0", f"{side.segs}/s2")]
        seen.append(answers)
    ref, fed = seen
    assert ref["after"] == [404, 404, 404]
    assert fed == ref


def test_dlo_across_clusters(sides):
    seen = []
    for side in sides:
        side.setup("dlo")
        r = side.req("PUT", f"{side.man}/dlo", {"X-Object-Manifest": f"{side.segs}/s",
                                                 "Content-Type": "application/test"}, data=b"")
        assert r.status_code == 201, r.text
        answers = {"head": shape(side.req("HEAD", f"{side.man}/dlo"), side, body=False),
                   "get": shape(side.req("GET", f"{side.man}/dlo"), side),
                   "range": shape(side.req("GET", f"{side.man}/dlo", {"Range": "bytes=995-1005"}), side),
                   "manifest": shape(side.req("GET", f"{side.man}/dlo?multipart-manifest=get"), side)}
        listing = side.req("GET", f"{side.man}?format=json").json()
        entry = [e for e in listing if e["name"] == "dlo"][0]
        answers["listing"] = (entry["bytes"], entry["content_type"], entry["hash"])
        seen.append(answers)
    ref, fed = seen
    assert ref["get"]["status"] == 200 and ref["head"]["x-object-manifest"] == "<segs>/s"
    for key in ref:
        assert fed[key] == ref[key], key


def test_the_marker_is_the_proxys_own(proxy):
    side = Side(proxy.auth_url, "east", "west")
    side.setup("mark")
    r = side.req("PUT", f"{side.man}/forged", {"Content-Type": "a/b;stackfed_slo=x-1"}, data=b"[]")
    assert r.status_code == 400
    # A POST with a new Content-Type keeps a large object what it is.
    assert side.slo().status_code == 201
    assert side.req("POST", f"{side.man}/slo", {"Content-Type": "text/x-new"}).status_code == 202
    h = side.req("HEAD", f"{side.man}/slo").headers
    assert h["content-type"] == "text/x-new"
    assert h["content-length"] == str(sum(map(len, SEG)))
    assert side.req("GET", f"{side.man}/slo").content == b"".join(SEG)


def test_dlo_read_by_referer_needs_both_containers_acl(sides):
    """Swift's test_dlo_referer_on_segment_container: a user of the account without
    rights (tester3) reads a DLO with a Referer; it is served only once both the manifest's
    and the segments' containers let that referer read (and list) them."""
    seen = []
    for side in sides:
        side.setup("ref")
        r = side.req("PUT", f"{side.man}/dlo", {"X-Object-Manifest": f"{side.segs}/s"}, data=b"")
        assert r.status_code == 201, r.text
        url, token3 = swc.Connection(authurl=side.auth_url, user="test:tester3", key="testing3",
                                     retries=0).get_auth()
        h = {"X-Auth-Token": token3, "Referer": "http://blah.example.com"}

        def read():
            r = requests.get(f"{url}/{side.man}/dlo", headers=h)
            return r.status_code, r.content if r.status_code == 200 else b""

        acl = {"X-Container-Read": ".r:*.example.com,.rlistings"}
        steps = [read()]
        assert side.req("POST", side.man, acl).status_code == 204
        steps.append(read())
        assert side.req("POST", side.segs, acl).status_code == 204
        steps.append(read())
        seen.append(steps)
    ref, fed = seen
    assert ref == [(403, b""), (403, b""), (200, b"".join(SEG))]
    assert fed == ref


# ----- large objects under versioning -------------------------------------------------

VERSIONED = ("x-object-version-id", "x-object-current-version-id")


def vshape(r, side, body=True):
    """shape() with whether version headers are there (their values differ by side)."""
    out = shape(r, side, body)
    out.update({h: h in r.headers for h in VERSIONED})
    return out


def drop_versions(side, name):
    """Every version of every object, then the container (so cleanup can delete it)."""
    side.req("POST", name, {"X-Versions-Enabled": "false"})
    listing = side.req("GET", f"{name}?format=json&versions")
    for o in (listing.json() if listing.status_code == 200 else []):
        side.req("DELETE", f"{name}/{quote(o['name'])}?version-id={o['version_id']}")


def test_slo_versions_across_clusters(sides):
    """New-style versioning (X-Versions-Enabled) of a manifest container whose segments
    live on another cluster: version-id reads, part numbers, manifests of old versions,
    ?versions listings, a restore by copy and multipart-manifest=delete of a version."""
    seen = []
    for side in sides:
        side.setup("ver", {"X-Versions-Enabled": "true"})
        answers = {}
        v1 = side.slo(entries=[{"path": f"/{side.segs}/s0"}, {"path": f"/{side.segs}/s1"}])
        v2 = side.slo(entries=[{"path": f"/{side.segs}/s2"}])
        answers["put"] = [(r.status_code, r.headers.get("etag")) for r in (v1, v2)]
        v1, v2 = v1.headers["x-object-version-id"], v2.headers["x-object-version-id"]
        obj = f"{side.man}/slo"
        for tag, v in (("v1", v1), ("v2", v2)):
            answers[f"get {tag}"] = vshape(side.req("GET", f"{obj}?version-id={v}"), side)
            answers[f"head {tag}"] = vshape(side.req("HEAD", f"{obj}?version-id={v}"), side, False)
            answers[f"range {tag}"] = vshape(
                side.req("GET", f"{obj}?version-id={v}", {"Range": "bytes=990-1010"}), side)
            for n in ("1", "2", "3"):
                answers[f"part {n} {tag}"] = vshape(
                    side.req("GET", f"{obj}?part-number={n}&version-id={v}"), side)
                answers[f"head part {n} {tag}"] = vshape(
                    side.req("HEAD", f"{obj}?part-number={n}&version-id={v}"), side, False)
            r = side.req("GET", f"{obj}?multipart-manifest=get&version-id={v}")
            answers[f"manifest {tag}"] = (
                r.status_code, r.headers.get("content-type"), r.headers.get("x-static-large-object"),
                [(side.anon(e["name"]), e["bytes"], e["hash"]) for e in r.json()])
        answers["current"] = vshape(side.req("GET", obj), side)

        def listing(query):
            entries = side.req("GET", f"{side.man}?format=json{query}").json()
            out = [{k: v for k, v in e.items() if k not in ("last_modified", "hash", "version_id")}
                   for e in entries if e["name"] == "slo"]
            for e in out:
                if "symlink_path" in e:
                    e["symlink_path"] = side.anon(e["symlink_path"].split("?")[0])
            return out
        answers["listing"] = listing("")
        answers["versions"] = listing("&versions")
        # Restore v1 by copying its manifest (as the functional suite does).
        r = side.req("COPY", f"{obj}?multipart-manifest=get&version-id={v1}",
                     {"Destination": f"{side.man}/slo"})
        answers["restore"] = (r.status_code, side.anon(r.headers.get("x-copied-from", "")),
                              "x-copied-from-version-id" in r.headers)
        answers["restored"] = vshape(side.req("GET", obj), side)
        answers["versions after restore"] = listing("&versions")
        r = side.req("DELETE", f"{obj}?multipart-manifest=delete&version-id={v2}",
                     {"Accept": "application/json"})
        answers["delete v2"] = (r.status_code, r.json())
        answers["versions after delete"] = listing("&versions")
        answers["s2 after"] = side.req("HEAD", f"{side.segs}/s2").status_code
        answers["current after"] = vshape(side.req("GET", obj), side)
        drop_versions(side, side.man)
        seen.append(answers)
    ref, fed = seen
    assert ref["part 2 v1"]["status"] == 206 and ref["part 2 v2"]["status"] == 416
    assert ref["delete v2"][1]["Number Deleted"] == 2 and ref["s2 after"] == 404
    assert len(ref["versions after restore"]) == 3
    # Known difference (README, "Large objects across clusters"): the current version's
    # entry in the plain listing is the versioning middleware's symlink, which keeps only
    # the bare content type, so the proxy cannot tell it is a large object: `bytes` is the
    # manifest's size and `slo_etag` is missing. Everything else must be Swift's.
    for entry in ref["listing"]:
        entry.pop("bytes"), entry.pop("slo_etag")
    for entry in fed["listing"]:
        entry.pop("bytes"), entry.pop("slo_etag", None)
    for key in ref:
        assert fed[key] == ref[key], key


def test_slo_under_versioned_writes_across_clusters(sides):
    """Legacy versioned writes (X-Versions-Location, named before it exists) of a
    manifest whose segments live on another cluster: the archive copy, its listing, reads
    of the archived manifest, and the restore on DELETE."""
    seen = []
    for side in sides:
        archive = uniq("archive")
        side.setup("vw", {"X-Versions-Location": archive})
        r = side.req("PUT", archive)
        assert r.status_code == 201, r.text
        CREATED.append((side, archive))
        side.names["archive"] = archive
        answers = {"put": [side.slo(entries=[{"path": f"/{side.segs}/s{i}"}]).status_code
                           for i in (0, 1)]}
        kept = side.req("GET", f"{archive}?format=json").json()
        answers["archive"] = [(e["bytes"], e["content_type"], e.get("slo_etag")) for e in kept]
        old = f"{archive}/{quote(kept[0]['name'])}"
        answers["old"] = shape(side.req("GET", old), side)
        answers["old head"] = shape(side.req("HEAD", old), side, False)
        r = side.req("GET", f"{old}?multipart-manifest=get")
        answers["old manifest"] = (r.status_code, r.headers.get("content-type"),
                                   [(side.anon(e["name"]), e["bytes"]) for e in r.json()])
        answers["current"] = shape(side.req("GET", f"{side.man}/slo"), side)
        answers["delete"] = side.req("DELETE", f"{side.man}/slo").status_code
        answers["restored"] = shape(side.req("GET", f"{side.man}/slo"), side)
        answers["listing"] = [(e["bytes"], e.get("slo_etag")) for e in
                              side.req("GET", f"{side.man}?format=json").json() if e["name"] == "slo"]
        answers["archive after"] = len(side.req("GET", f"{archive}?format=json").json())
        side.req("POST", side.man, {"X-Remove-Versions-Location": "x"})
        seen.append(answers)
    ref, fed = seen
    assert ref["put"] == [201, 201] and len(ref["archive"]) == 1
    assert ref["restored"]["content-length"] == str(len(SEG[0]))
    for key in ref:
        assert fed[key] == ref[key], key


# ----- manifests copied to other accounts and clusters ----------------------------------

def test_manifest_copies_are_validated_as_manifest_puts(sides, clusters, proxy):
    """A manifest copied as such (?multipart-manifest=get) into another account whose
    segment container lives on another cluster than the destination: validated as a
    manifest PUT there (Swift's 403s, then 404s, then success), by PUT+X-Copy-From and by
    COPY; copies of the data; a DLO manifest copied."""
    seen = []
    for side, auth_url in zip(sides, (clusters["east"].auth_url, proxy.auth_url)):
        side.setup("cpm")
        assert side.slo().status_code == 201
        assert side.req("PUT", f"{side.man}/dlo", {"X-Object-Manifest": f"{side.segs}/s"},
                        data=b"").status_code == 201
        other = Side(auth_url, None, None, user="test2:tester2", key="testing2")
        account2 = other.url.rsplit("/", 1)[1]
        dst = uniq("cpm-dst")
        h = {"X-Container-Write": "test:tester", "X-Container-Read": "test:tester"}
        if side.pins["man"]:
            h["X-Container-Attr-Cluster"] = "east"
        assert other.req("PUT", dst, h).status_code == 201
        CREATED.append((other, dst))
        assert other.req("PUT", f"{dst}/filler", data=b"f").status_code == 201
        answers = {}

        def copy(name, query="multipart-manifest=get", verb="PUT", src="slo"):
            if verb == "PUT":
                base, account1 = side.url.rsplit("/", 1)
                r = requests.put(f"{base}/{account2}/{dst}/{name}?{query}", data=b"",
                                 headers={"X-Auth-Token": side.token,
                                          "X-Copy-From": f"{side.man}/{src}",
                                          "X-Copy-From-Account": account1})
            else:
                r = side.req("COPY", f"{side.man}/{src}?{query}",
                             {"Destination": f"{dst}/{name}", "Destination-Account": account2})
            body = peers.errors_in_order(r.headers.get("content-type"),
                                         side.anon(r.content).replace(dst, "<dst>"))
            return (r.status_code, body,
                    side.anon(r.headers.get("x-copied-from", "")))

        # No segment container in account2: the caller may not read there.
        answers["no segs"] = copy("m1")
        answers["no segs COPY"] = copy("m1", verb="COPY")
        # The segment container (the same name) on the other cluster, readable, without
        # the segments: 404s.
        h = {"X-Container-Read": "test:tester"}
        if side.pins["segs"]:
            h["X-Container-Attr-Cluster"] = "west"
        assert other.req("PUT", side.segs, h).status_code == 201
        CREATED.append((other, side.segs))
        assert other.req("PUT", f"{side.segs}/filler", data=b"f").status_code == 201
        answers["no segments"] = copy("m1")
        for i, data in enumerate(SEG):
            assert other.req("PUT", f"{side.segs}/s{i}", data=data).status_code == 201
        answers["copied"] = copy("m1")
        answers["copied COPY"] = copy("m2", verb="COPY")
        answers["data copy"] = copy("d1", query="")
        answers["dlo copied"] = copy("dlo1", src="dlo")
        answers["dlo data"] = copy("dlo2", query="", src="dlo")
        for name in ("m1", "m2", "d1", "dlo1", "dlo2"):
            answers[name] = shape(other.req("GET", f"{dst}/{name}"), side)
            r = other.req("GET", f"{dst}/{name}?multipart-manifest=get")
            answers[name + " manifest"] = (
                r.status_code, r.headers.get("x-static-large-object"),
                side.anon(r.headers.get("x-object-manifest", "")),
                [(side.anon(e["name"]), e["bytes"]) for e in r.json()]
                if r.headers.get("x-static-large-object") else None)
        # The same account: the manifest copied next to itself reads as the original.
        answers["same account"] = copy_same = side.req(
            "COPY", f"{side.man}/slo?multipart-manifest=get", {"Destination": f"{side.man}/slo2"}
        ).status_code
        assert copy_same == 201
        answers["same account get"] = shape(side.req("GET", f"{side.man}/slo2"), side)
        seen.append(answers)
    ref, fed = seen
    assert ref["no segs"][0] == 400 and ref["no segs"][1].count("403 Forbidden") == 3
    assert ref["no segments"][1].count("404 Not Found") == 3
    assert ref["copied"][0] == 201 and ref["m1"]["status"] == 200
    for key in ref:
        assert fed[key] == ref[key], key


def test_conditional_reads_of_an_slo_across_clusters_say_their_length(sides):
    """A 304 (and 412) judged on the large object's ETag says `Content-Length: 0`, as one
    cluster's does (the proxy's own 304 went out without it)."""
    seen = []
    for side in sides:
        side.setup("cond")
        assert side.slo().status_code == 201
        etag = side.req("HEAD", f"{side.man}/slo").headers["etag"]
        answers = {}
        for method in ("GET", "HEAD"):
            for name, h in (("none-match", {"If-None-Match": etag}),
                            ("match other", {"If-Match": '"x"'}),
                            ("none-match *", {"If-None-Match": "*"})):
                r = side.req(method, f"{side.man}/slo", h)
                answers[(method, name)] = shape(r, side, body=method == "GET")
        seen.append(answers)
    assert seen[0][("GET", "none-match")]["status"] == 304
    assert seen[0][("GET", "none-match")]["content-length"] == "0"
    assert seen[1] == seen[0]


VERSION_ID = re.compile(r"\d{10}\.\d{5}")
LAST_MODIFIED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")
LISTINGS = [f"format={f}{q}" for f in ("json", "xml")
            for q in ("", "&prefix=s", "&marker=filler", "&limit=2", "&reverse=true",
                      "&reverse=true&marker=slo", "&reverse=true&limit=1", "&end_marker=slo",
                      "&end_marker=z", "&reverse=true&end_marker=filler", "&delimiter=/",
                      "&reverse=true&delimiter=/", "&versions",
                      "&versions&reverse=true")]


def listing_text(side, body, hashes=()):
    """A listing's bytes with what may differ between two sides' objects masked: the
    container names, the times, the version ids, the given hashes."""
    text = side.anon(body)
    for h in hashes:
        text = text.replace(h, "<hash>")
    return LAST_MODIFIED.sub("<time>", VERSION_ID.sub("<version>", text))


def test_slo_in_a_versioned_container_is_listed_with_its_size_and_slo_etag(sides):
    """A container with object versioning (`X-Versions-Enabled: true`) lists its objects
    as links to versions: Swift lists an SLO there with the large object's size and
    `slo_etag`, as in `?versions` (the proxy listed its stored manifest's size), in
    every listing: JSON and XML, forward and `reverse`, with `marker`, `end_marker`,
    `prefix` and `limit`. Compared byte for byte (names, times, version ids and the
    stored manifest's hash masked)."""
    seen = []
    for side in sides:
        side.setup("verslist", {"X-Versions-Enabled": "true"})
        # An older version of another size: the listing shows the current one's.
        assert side.slo(entries=[{"path": f"/{side.segs}/s0"}]).status_code == 201
        assert side.slo().status_code == 201
        assert side.req("PUT", f"{side.man}/plain", data=b"plain").status_code == 201
        for name in ('q&<"é>\' t', "d/x"):  # escaped in XML; a subdir with delimiter
            assert side.req("PUT", f"{side.man}/{quote(name)}", data=b"o").status_code == 201
        manifest = side.req("GET", f"{side.man}/slo?multipart-manifest=get&format=raw")
        stored = [e["hash"] for e in side.req("GET", f"{side.man}?format=json&versions").json()
                  if e["name"] == "slo"]
        assert manifest.status_code == 200 and stored
        answers = {}
        for query in LISTINGS:
            r = side.req("GET", f"{side.man}?{query}")
            answers[query] = (r.status_code, r.headers.get("content-type"),
                              listing_text(side, r.content, stored))
        seen.append(answers)
    size = sum(map(len, SEG))
    listing = json.loads(seen[0]["format=json"][2])
    assert ("slo", size) == (listing[-1]["name"], listing[-1]["bytes"])
    assert listing[-1]["slo_etag"]
    assert f"<bytes>{size}</bytes>" in seen[0]["format=xml"][2]
    differ = {q: (seen[0][q], seen[1][q]) for q in LISTINGS if seen[1][q] != seen[0][q]}
    assert not differ, "\n".join(f"{q}:\n  one cluster {a}\n  proxy       {b}"
                                  for q, (a, b) in differ.items())


def test_slo_in_a_container_whose_versioning_is_suspended_is_listed_as_swift_lists_it(sides):
    """Versioning suspended (`X-Versions-Enabled: false` after `true`, versions kept):
    the objects written while it was on are still links to their versions, and Swift
    still lists them as their versions (an SLO with its size and `slo_etag`); one
    written since is a plain object again."""
    seen = []
    for side in sides:
        side.setup("suspended", {"X-Versions-Enabled": "true"})
        assert side.slo().status_code == 201
        assert side.req("POST", side.man, {"X-Versions-Enabled": "false"}).status_code == 204
        assert side.slo("later", entries=[{"path": f"/{side.segs}/s1"}]).status_code == 201
        stored = [e["hash"] for e in side.req("GET", f"{side.man}?format=json&versions").json()
                  if e["name"] in ("slo", "later")]
        stored += [side.req("HEAD", f"{side.man}/{n}?multipart-manifest=get").headers["etag"]
                   for n in ("slo", "later")]
        answers = {}
        for query in ("format=json", "format=xml", "format=json&reverse=true",
                      "format=json&versions"):
            r = side.req("GET", f"{side.man}?{query}")
            answers[query] = (r.status_code, r.headers.get("x-versions-enabled"),
                              listing_text(side, r.content, stored))
        drop_versions(side, side.man)
        seen.append(answers)
    listing = json.loads(seen[0]["format=json"][2])
    assert [(e["name"], e["bytes"]) for e in listing] == [
        ("filler", 1), ("later", len(SEG[1])), ("slo", sum(map(len, SEG)))]
    assert seen[0]["format=json"][1] == "False"
    differ = {q: (seen[0][q], seen[1][q]) for q in seen[0] if seen[1][q] != seen[0][q]}
    assert not differ, "\n".join(f"{q}:\n  one cluster {a}\n  proxy       {b}"
                                  for q, (a, b) in differ.items())

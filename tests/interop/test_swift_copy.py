"""Server-side copies through the federation proxy, across two real Swift clusters, against
the same requests made on one real cluster (the reference: both containers on east).

Swift's copy middleware is the model: the headers it keeps, ranges, conditions,
Swift's answer headers, links, other accounts, raw UTF-8 names. (staticweb's redirects
need the SAIO pipeline, which these clusters do not run: the functional suite checks
them, test_redirect_slash_*.)"""

import hashlib
import uuid
from urllib.parse import quote

import pytest
import requests
from swiftclient import client as swc

KEPT = ("content-type", "content-encoding", "content-disposition", "content-language",
        "cache-control", "x-object-meta-color", "x-object-meta-extra")


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def login(auth_url, user="test:tester", key="testing"):
    return swc.Connection(authurl=auth_url, user=user, key=key, retries=0).get_auth()


CREATED = []


@pytest.fixture(autouse=True)
def cleanup():
    """Deletes every container a test made (other tests compare whole listings)."""
    yield
    while CREATED:
        side, name = CREATED.pop()
        listing = side.req("GET", f"{name}?format=json")
        for o in (listing.json() if listing.status_code == 200 else []):
            side.req("DELETE", f"{name}/{quote(o['name'])}")
        side.req("DELETE", name)


class Side:
    """One place to run a scenario: a storage URL, a token, and where containers go."""

    def __init__(self, auth_url, src_pin, dst_pin, user="test:tester", key="testing"):
        self.url, self.token = login(auth_url, user, key)
        self.auth_url = auth_url
        self.pins = {"src": src_pin, "dst": dst_pin}

    def req(self, method, path, headers=None, **kw):
        h = {"X-Auth-Token": self.token}
        h.update(headers or {})
        return requests.request(method, f"{self.url}/{path}", headers=h, allow_redirects=False, **kw)

    def containers(self, tag, extra=None):
        names = {"src": uniq(f"{tag}-src"), "dst": uniq(f"{tag}-dst")}
        for role, name in names.items():
            h = dict(extra or {})
            if self.pins[role]:
                h["X-Container-Attr-Cluster"] = self.pins[role]
            assert self.req("PUT", name, h).status_code in (201, 202)
            CREATED.append((self, name))
        return names["src"], names["dst"]


@pytest.fixture
def sides(clusters, proxy):
    """(reference on one cluster, the proxy with src on east and dst on west)."""
    return (Side(clusters["east"].auth_url, None, None),
            Side(proxy.auth_url, "east", "west"))


def dressed(side, src):
    r = side.req("PUT", f"{src}/obj", {
        "Content-Type": "application/test", "Content-Encoding": "gzip",
        "Content-Disposition": "attachment; filename=myfile", "Content-Language": "fr",
        "Cache-Control": "no-cache", "X-Object-Meta-Color": "blue"}, data=bytes(range(256)) * 4)
    assert r.status_code == 201, r.text


def test_a_copy_keeps_what_swift_keeps_and_says_where_it_came_from(sides):
    seen = []
    for side in sides:
        src, dst = side.containers("keep")
        dressed(side, src)
        r = side.req("COPY", f"{src}/obj", {"Destination": f"/{dst}/copy",
                                            "X-Object-Meta-Extra": "fresh"})
        assert r.status_code == 201, r.text
        head = side.req("HEAD", f"{dst}/copy").headers
        source = side.req("HEAD", f"{src}/obj").headers
        seen.append({
            "kept": {k: head.get(k) for k in KEPT},
            "etag": head["etag"],
            "copied-from": r.headers.get("x-copied-from") == f"{src}/obj",
            "copied-from-account": r.headers.get("x-copied-from-account"),
            "last-modified": r.headers.get("x-copied-from-last-modified") == source["last-modified"],
            "meta-echoed": r.headers.get("x-object-meta-extra"),
        })
    assert seen[0]["kept"]["content-encoding"] == "gzip"  # the reference kept it
    assert seen[1] == seen[0]


def test_a_copy_takes_the_range_and_the_conditions_of_the_request(sides):
    seen = []
    for side in sides:
        src, dst = side.containers("range")
        assert side.req("PUT", f"{src}/obj", data=bytes(range(256)) * 4).status_code == 201
        etag = side.req("HEAD", f"{src}/obj").headers["etag"]
        answers = {}
        for name, h in {
            "range": {"Range": "bytes=100-200"},
            "bad-range": {"Range": "bytes=5000-6000"},
            "if-match-no": {"If-Match": '"0123"'},
            "if-match-yes": {"If-Match": etag},
            "if-none-match": {"If-None-Match": etag},
        }.items():
            h["X-Copy-From"] = f"{src}/obj"
            r = side.req("PUT", f"{dst}/{name}", h, data=b"")
            got = side.req("GET", f"{dst}/{name}")
            answers[name] = (r.status_code, got.status_code,
                             hashlib.md5(got.content).hexdigest() if got.ok else None)
        seen.append(answers)
    assert seen[0]["range"][0] == 201 and seen[0]["if-match-no"][0] == 412
    assert seen[1] == seen[0]


def test_names_in_copy_headers_may_be_raw_utf8(sides):
    seen = []
    for side in sides:
        src, dst = side.containers("utf8")
        assert side.req("PUT", f"{src}/%C3%BCn%C3%AFcode", data=b"x").status_code == 201
        answers = []
        for i, value in enumerate([f"{src}/ünïcode".encode(), f"/{src}/%C3%BCn%C3%AFcode".encode(),
                                   b"no-slash-here", b"//" + src.encode() + b"/x"]):
            r = side.req("PUT", f"{dst}/o{i}", {"X-Copy-From": value}, data=b"")
            answers.append((r.status_code, r.text if r.status_code >= 400 else None))
        r = side.req("COPY", f"{src}/%C3%BCn%C3%AFcode", {"Destination": f"{dst}/ü".encode()})
        answers.append((r.status_code, None))
        seen.append(answers)
    assert seen[0][0][0] == 201
    assert seen[1] == seen[0]


def test_copies_between_accounts(clusters, proxy):
    seen = []
    for auth_url, pins in ((clusters["east"].auth_url, (None, None)), (proxy.auth_url, ("east", "west"))):
        me = Side(auth_url, pins[0], None)
        other = Side(auth_url, None, pins[1], "admin:admin", "admin")
        mine, _ = me.containers("mine")
        _, shared = other.containers("shared", {"X-Container-Read": "test:tester",
                                                "X-Container-Write": "test:tester"})
        _, private = other.containers("private")
        for c in (shared, private):
            assert other.req("PUT", f"{c}/theirs", data=b"theirs").status_code == 201
        assert me.req("PUT", f"{mine}/o", data=b"mine").status_code == 201
        acct2 = other.url.rsplit("/", 1)[1]
        answers = {}
        for name, method, path, h in [
            ("from", "PUT", f"{mine}/taken", {"X-Copy-From": f"{shared}/theirs"}),
            ("from-private", "PUT", f"{mine}/stolen", {"X-Copy-From": f"{private}/theirs"}),
            ("from-missing", "PUT", f"{mine}/none", {"X-Copy-From": f"{shared}/missing"}),
            # Into a container that does not exist: Swift reads the source, then 404.
            ("into-missing", "PUT", f"{uniq('nosuch')}/x", {"X-Copy-From": f"{shared}/theirs"}),
        ]:
            h["X-Copy-From-Account"] = acct2
            r = me.req(method, path, h, data=b"")
            answers[name] = (r.status_code, r.headers.get("x-copied-from-account") == acct2)
        for name, c in (("to", shared), ("to-private", private)):
            r = me.req("COPY", f"{mine}/o", {"Destination": f"{c}/given", "Destination-Account": acct2})
            answers[name] = r.status_code
        answers["landed"] = other.req("GET", f"{shared}/given").content
        answers["taken"] = me.req("GET", f"{mine}/taken").content
        seen.append(answers)
    assert seen[0]["from"] == (201, True) and seen[0]["to-private"] == 403
    assert seen[0]["into-missing"] == (404, False)
    assert seen[1] == seen[0]


def test_copying_links_across_clusters(clusters, proxy):
    seen = []
    for auth_url, pins in ((clusters["east"].auth_url, (None, None)), (proxy.auth_url, ("east", "west"))):
        side = Side(auth_url, *pins)
        links, data = side.containers("links")
        assert side.req("PUT", f"{data}/target", data=b"payload").status_code == 201
        r = side.req("PUT", f"{links}/l", {"X-Symlink-Target": f"{data}/target"}, data=b"")
        assert r.status_code == 201
        answers = []
        # A plain copy copies the target (within the link's cluster, and across).
        for dst in (links, data):
            r = side.req("PUT", f"{dst}/copy", {"X-Copy-From": f"{links}/l"}, data=b"")
            got = side.req("GET", f"{dst}/copy?symlink=get")
            answers.append((r.status_code, got.content, got.headers.get("x-symlink-target")))
        # ?symlink=get copies the link itself.
        r = side.req("COPY", f"{links}/l?symlink=get", {"Destination": f"{data}/l-copy"})
        got = side.req("GET", f"{data}/l-copy?symlink=get")
        answers.append((r.status_code, got.content,
                        got.headers.get("x-symlink-target", "").replace(data, "<data>")))
        seen.append(answers)
    assert seen[0][2][2] is not None and seen[0][0][1] == b"payload"
    assert seen[1] == seen[0]


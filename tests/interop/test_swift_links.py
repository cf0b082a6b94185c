"""References the clusters cannot follow themselves, done by the proxy: static symlinks
(`X-Symlink-Target-Etag`) whose target is on another cluster, and temp URLs signed with
an ACCOUNT key reading a DLO's segments or a link's target in another container on
another cluster (a container key's temp URL may not).

Every scenario runs twice: on one real cluster (the reference: both containers there)
and through the proxy with the link's or manifest's container on east and the other on
west, both holding objects (so the proxy cannot move an empty one instead). The answers
are compared: status, the relevant headers, bodies, listing entries.

The module starts its own federation of two clusters with Swift's SAIO pipeline
(tempurl); the reference is its east cluster, reached directly."""

import hashlib
import json
import hmac
import re
import time
import uuid
from urllib.parse import quote

import pytest
import requests
from swiftclient import client as swc

import peers


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def fed(workdir, proxy_binary):
    cs = peers.start_clusters(workdir / "links-swift", ["east", "west"], full_pipeline=True)
    p = peers.FederationProxy(workdir / "links-proxy", cs)
    try:
        p.start(proxy_binary)
        yield p, {c.name: c for c in cs}
    finally:
        p.stop()
        for c in cs:
            c.teardown()


class Side:
    """A storage URL and a token: one cluster, or the proxy with pinned placement."""

    def __init__(self, auth_url, pins, user="test:tester", key="testing"):
        self.url, self.token = swc.Connection(authurl=auth_url, user=user, key=key,
                                              retries=0).get_auth()
        self.account = self.url.rsplit("/", 1)[1]
        self.root = self.url[: self.url.index("/v1/")]
        self.pins = pins

    def req(self, method, path, headers=None, token=True, **kw):
        h = {"X-Auth-Token": self.token} if token else {}
        h.update(headers or {})
        return requests.request(method, f"{self.url}/{path}" if path else self.url, headers=h,
                                allow_redirects=False, **kw)

    def container(self, tag, role, extra=None):
        """A container (pinned to `role`'s cluster through the proxy) holding one object."""
        name = uniq(tag)
        h = dict(extra or {})
        if self.pins.get(role):
            h["X-Container-Attr-Cluster"] = self.pins[role]
        assert self.req("PUT", name, h).status_code in (201, 202)
        assert self.req("PUT", f"{name}/filler", data=b"f").status_code == 201
        return name


def sides(fed):
    proxy, clusters = fed
    return [("one cluster", Side(clusters["east"].auth_url, {})),
            ("proxy", Side(proxy.auth_url, {"links": "east", "data": "west"}))]


def answer(r, *headers):
    return (r.status_code, r.content if r.status_code != 200 or r.request.method != "HEAD" else b"",
            {h: r.headers.get(h) for h in headers})


def same(seen):
    """Both sides answered alike (names made unique per side are replaced first)."""
    (_, a), (_, b) = seen
    assert b == a


# ----- static links across clusters ------------------------------------------------------

def test_a_static_link_to_another_cluster_is_made_and_read_as_on_one_cluster(fed):
    seen = []
    for label, side in sides(fed):
        links, data = side.container("links", "links"), side.container("data", "data")
        r = side.req("PUT", f"{data}/target", {"Content-Type": "text/x-target"}, data=b"payload")
        etag = r.headers["etag"]
        answers = {}
        r = side.req("PUT", f"{links}/l", {"X-Symlink-Target": f"{data}/target",
                                           "X-Symlink-Target-Etag": etag}, data=b"")
        answers["put"] = r.status_code
        r = side.req("PUT", f"{links}/typed", {"X-Symlink-Target": f"{data}/target",
                                               "X-Symlink-Target-Etag": f'"{etag}"',
                                               "Content-Type": "text/x-link"}, data=b"")
        answers["put-typed"] = r.status_code
        loc = f"/v1/{side.account}/{data}/target"
        for method in ("GET", "HEAD"):
            r = side.req(method, f"{links}/l")
            answers[f"{method} follows"] = (
                answer(r, "content-type", "etag", "content-length"),
                r.headers.get("content-location") == loc)
            r = side.req(method, f"{links}/l", {"Range": "bytes=1-3"})
            answers[f"{method} range"] = answer(r, "content-range", "content-length")
            for name in ("l", "typed"):
                r = side.req(method, f"{links}/{name}?symlink=get")
                answers[f"{method} {name} itself"] = (
                    answer(r, "content-type", "etag", "content-length",
                           "x-symlink-target-etag", "x-symlink-target-bytes"),
                    r.headers.get("x-symlink-target") == f"{data}/target")
        listing = side.req("GET", f"{links}?format=json").json()
        for entry in listing:
            entry.pop("last_modified", None)
            if "symlink_path" in entry:
                assert entry["symlink_path"] == loc
                entry["symlink_path"] = "<loc>"
        answers["listing"] = listing
        answers["listing keys"] = [list(e) for e in listing]
        xml = side.req("GET", f"{links}?format=xml").text
        answers["xml types"] = [t.split("</content_type>")[0]
                                for t in xml.split("<content_type>")[1:]]
        # The target changes: the link is broken (409), and says where it points.
        assert side.req("PUT", f"{data}/target", data=b"changed").status_code == 201
        for method in ("GET", "HEAD"):
            r = side.req(method, f"{links}/l")
            answers[f"{method} broken"] = (answer(r, "content-type"),
                                          r.headers.get("content-location") == loc)
        seen.append((label, answers))
    assert seen[0][1]["put"] == 201
    assert seen[0][1]["GET broken"][0][0] == 409
    assert any("symlink_etag" in keys for keys in seen[0][1]["listing keys"])
    same(seen)


def test_a_static_link_to_another_cluster_is_checked_as_swift_checks_it(fed):
    seen = []
    for label, side in sides(fed):
        links, data = side.container("links", "links"), side.container("data", "data")
        etag = side.req("PUT", f"{data}/target", data=b"payload").headers["etag"]
        assert side.req("PUT", f"{data}/dyn", {"X-Symlink-Target": f"{data}/target"},
                        data=b"").status_code == 201
        assert side.req("PUT", f"{data}/static", {"X-Symlink-Target": f"{data}/target",
                                                  "X-Symlink-Target-Etag": etag},
                        data=b"").status_code == 201
        answers = {}
        for name, target, tag in [
            ("wrong etag", "target", "0123456789abcdef0123456789abcdef"),
            ("missing", "nothing-here", etag),
            ("bad format", "target", 'a"b'),
            ("to a dynamic link", "dyn", etag),
            ("to a static link", "static", etag),
            ("to a static link, other etag", "static", "0123456789abcdef0123456789abcdef"),
        ]:
            r = side.req("PUT", f"{links}/{uuid.uuid4().hex}",
                         {"X-Symlink-Target": f"{data}/{target}", "X-Symlink-Target-Etag": tag},
                         data=b"")
            loc = r.headers.get("content-location")
            answers[name] = (r.status_code, r.text.replace(side.account, "<acct>")
                             .replace(data, "<data>") if r.status_code >= 400 else None,
                             loc.replace(side.account, "<acct>").replace(data, "<data>")
                             if loc else None)
        seen.append((label, answers))
    assert seen[0][1]["wrong etag"][0] == 409
    assert seen[0][1]["missing"][0] == 409
    same(seen)


def test_a_static_link_into_another_account_needs_read_access(fed):
    proxy, clusters = fed
    seen = []
    for label, auth_url, pins in (("one cluster", clusters["east"].auth_url, {}),
                                  ("proxy", proxy.auth_url, {"links": "east", "data": "west"})):
        me = Side(auth_url, pins)
        other = Side(auth_url, pins, "test2:tester2", "testing2")
        data = me.container("data", "data")
        etag = me.req("PUT", f"{data}/target", data=b"payload").headers["etag"]
        links = other.container("links", "links")
        h = {"X-Symlink-Target-Account": me.account, "X-Symlink-Target": f"{data}/target",
             "X-Symlink-Target-Etag": etag}
        answers = {"no access": other.req("PUT", f"{links}/l", h, data=b"").status_code}
        assert me.req("POST", data, {"X-Container-Read": "test2:tester2"}).status_code == 204
        answers["access"] = other.req("PUT", f"{links}/l", h, data=b"").status_code
        r = other.req("GET", f"{links}/l")
        answers["read"] = (r.status_code, r.content)
        assert me.req("PUT", f"{data}/target", data=b"changed").status_code == 201
        answers["broken"] = other.req("GET", f"{links}/l").status_code
        assert me.req("POST", data, {"X-Remove-Container-Read": "x"}).status_code == 204
        r = other.req("GET", f"{links}/l")
        answers["revoked"] = (r.status_code,
                              r.headers.get("content-location") == f"/v1/{me.account}/{data}/target")
        seen.append((label, answers))
    assert seen[0][1]["no access"] == 403 and seen[0][1]["access"] == 201
    same(seen)


# ----- temp URLs signed with an account key or a container key ------------------------

def temp_url(side, method, path, key, digest=hashlib.sha256, prefix=None, b64=False):
    expires = int(time.time()) + 600
    full = f"/v1/{side.account}/{path}"
    signed = f"prefix:/v1/{side.account}/{prefix}" if prefix is not None else full
    mac = hmac.new(key.encode(), f"{method}\n{expires}\n{signed}".encode(), digest)
    if b64:
        import base64
        sig = f"{digest().name}:" + base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")
    else:
        sig = mac.hexdigest()
    q = f"temp_url_sig={quote(sig)}&temp_url_expires={expires}"
    if prefix is not None:
        q += f"&temp_url_prefix={quote(prefix.split('/', 1)[1])}"
    return f"{side.root}{quote(full)}?{q}"


def test_temp_urls_reach_other_containers_only_with_an_account_key(fed):
    seen = []
    for label, side in sides(fed):
        akey, ckey = uniq("akey"), uniq("ckey")
        assert side.req("POST", "", {"X-Account-Meta-Temp-URL-Key": akey}).status_code == 204
        links = side.container("links", "links", {"X-Container-Meta-Temp-URL-Key": ckey})
        # A UTF-8 name, sent raw in X-Object-Manifest (as Swift's own tests do).
        data = side.container("dätä", "data")
        for i in range(3):
            assert side.req("PUT", f"{data}/seg/{i}", data=b"%d" % i * 5).status_code == 201
        assert side.req("PUT", f"{links}/dlo", {"X-Object-Manifest": f"{data}/seg/".encode()},
                        data=b"").status_code == 201
        # An empty manifest container (pinned to east) moves to its segments' cluster.
        moved = uniq("moved")
        h = {"X-Container-Attr-Cluster": "east"} if side.pins else {}
        assert side.req("PUT", moved, h).status_code == 201
        assert side.req("PUT", f"{moved}/dlo", {"X-Object-Manifest": f"{data}/seg/".encode()},
                        data=b"").status_code == 201
        r = requests.get(temp_url(side, "GET", f"{moved}/dlo", akey))
        answers = {"moved": (r.status_code, r.content)}
        assert side.req("PUT", f"{data}/target", data=b"payload").status_code == 201
        assert side.req("PUT", f"{links}/sym", {"X-Symlink-Target": f"{data}/target".encode()},
                        data=b"").status_code == 201
        for obj in ("dlo", "sym"):
            for keyname, key in (("account", akey), ("container", ckey)):
                for form, kw in (("hex sha256", {}), ("base64 sha512",
                                                      {"digest": hashlib.sha512, "b64": True}),
                                 ("prefix", {"prefix": f"{links}/{obj[:2]}"})):
                    for method in ("GET", "HEAD"):
                        url = temp_url(side, method, f"{links}/{obj}", key, **kw)
                        r = requests.request(method, url)
                        # (A refused HEAD: the proxy's 401 says the length of its
                        # body, one cluster 0; a known difference, left alone.)
                        length = r.headers.get("content-length") if r.ok or method == "GET" else None
                        answers[(obj, keyname, form, method)] = (r.status_code, r.content, length)
            # A wrong key is refused, as on one cluster.
            r = requests.get(temp_url(side, "GET", f"{links}/{obj}", "not-a-key"))
            answers[(obj, "wrong")] = r.status_code
        # A user of the account who is not its owner logs in last: the proxy's newest
        # session of the account cannot see its temp URL keys (Swift shows them to owners
        # only); the account key's reach must not depend on who logged in last.
        # With an account ACL (as Swift's test_account.py grants), that user reads the
        # account (2xx) without its keys.
        acl = {"X-Account-Access-Control": json.dumps({"read-only": ["test:tester3"]})}
        assert side.req("POST", "", acl).status_code == 204
        try:
            _, t3 = swc.Connection(authurl=f"{side.root}/auth/v1.0", user="test:tester3",
                                   key="testing3", retries=0).get_auth()
            h = requests.head(side.url, headers={"X-Auth-Token": t3})
            answers["non-owner account HEAD"] = (h.status_code,
                                                 "x-account-meta-temp-url-key" in h.headers)
            for obj in ("dlo", "sym"):
                r = requests.get(temp_url(side, "GET", f"{links}/{obj}", akey))
                answers[(obj, "account key after a non-owner's login")] = (r.status_code,
                                                                           r.content)
        finally:
            side.req("POST", "", {"X-Remove-Account-Access-Control": "x"})
        seen.append((label, answers))
    ref = seen[0][1]
    assert ref[("dlo", "account", "hex sha256", "GET")][:2] == (200, b"000001111122222")
    assert ref[("sym", "account", "hex sha256", "GET")][:2] == (200, b"payload")
    assert ref[("dlo", "container", "hex sha256", "GET")][0] == 401
    assert ref["moved"] == (200, b"000001111122222")
    same(seen)


# ----- chains of links across clusters ----------------------------------------------------

def test_link_chains_across_clusters_count_and_check_as_on_one_cluster(fed):
    """A chain leaving the link's cluster is walked by the proxy as Swift's middleware
    walks it: every link counts (`symloop_max` 2: a third link or a loop is 409 "Too many
    levels"), and a static link to a static link whose final target changed is 409."""
    seen = []
    for label, side in sides(fed):
        links, data = side.container("links", "links"), side.container("data", "data")
        third = side.container("third", "links")
        names = (side.account, links, data, third)

        def clean(text):
            for i, n in enumerate(names):
                text = text.replace(n, f"<{i}>")
            return text

        def read(method, path):
            r = side.req(method, path)
            return (r.status_code, r.content, r.headers.get("content-type"),
                    clean(r.headers.get("content-location") or ""))

        etag = side.req("PUT", f"{third}/obj", data=b"third").headers["etag"]
        for path, h in [
            (f"{data}/l2", {"X-Symlink-Target": f"{third}/obj", "X-Symlink-Target-Etag": etag}),
            (f"{links}/l1", {"X-Symlink-Target": f"{data}/l2", "X-Symlink-Target-Etag": etag}),
            (f"{links}/l1d", {"X-Symlink-Target": f"{data}/l2"}),
            (f"{links}/h3", {"X-Symlink-Target": f"{links}/l1d"}),
            (f"{links}/loopa", {"X-Symlink-Target": f"{data}/loopb"}),
            (f"{data}/loopb", {"X-Symlink-Target": f"{links}/loopa"}),
        ]:
            assert side.req("PUT", path, h, data=b"").status_code == 201
        answers = {}
        for method in ("GET", "HEAD"):
            for name in ("l1", "l1d", "h3", "loopa"):
                answers[(method, name)] = read(method, f"{links}/{name}")
        assert side.req("PUT", f"{third}/obj", data=b"changed").status_code == 201
        for method in ("GET", "HEAD"):
            answers[(method, "l1 changed")] = read(method, f"{links}/l1")
            answers[(method, "l1d changed")] = read(method, f"{links}/l1d")
        seen.append((label, answers))
    ref = seen[0][1]
    assert ref[("GET", "l1")][:2] == (200, b"third")
    assert ref[("GET", "h3")][0] == 409 and ref[("GET", "loopa")][0] == 409
    assert ref[("GET", "l1 changed")][0] == 409
    same(seen)


def test_a_post_to_a_static_link_across_clusters_keeps_it_static(fed):
    """A POST with a new Content-Type on a static link: Swift answers 307 with
    `X-Symlink-Target-Etag` and the link stays static (its target ETag is sysmeta)."""
    seen = []
    for label, side in sides(fed):
        links, data = side.container("links", "links"), side.container("data", "data")
        etag = side.req("PUT", f"{data}/target", data=b"payload").headers["etag"]
        assert side.req("PUT", f"{links}/l", {"X-Symlink-Target": f"{data}/target",
                                              "X-Symlink-Target-Etag": etag},
                        data=b"").status_code == 201
        answers = {}
        r = side.req("POST", f"{links}/l", {"Content-Type": "text/x-new",
                                            "X-Object-Meta-Color": "blue"})
        answers["post"] = (r.status_code, r.content, r.headers.get("x-symlink-target-etag"))
        r = side.req("HEAD", f"{links}/l?symlink=get")
        answers["itself"] = {h: r.headers.get(h) for h in (
            "content-type", "x-object-meta-color", "x-symlink-target-etag",
            "x-symlink-target-bytes")}
        answers["listing"] = [(e["content_type"], e.get("symlink_etag"), e.get("symlink_bytes"))
                              for e in side.req("GET", f"{links}?format=json").json()]
        assert side.req("PUT", f"{data}/target", data=b"changed").status_code == 201
        answers["broken"] = side.req("GET", f"{links}/l").status_code
        seen.append((label, answers))
    ref = seen[0][1]
    assert ref["post"][0] == 307 and ref["post"][2] and ref["broken"] == 409
    same(seen)


def test_ip_restricted_temp_urls_judge_the_clients_address(fed):
    """`temp_url_ip_range`: the clusters see the proxy's address, so the proxy judges the
    client's, as one cluster does (a client on 127.0.0.2 with a URL for 127.0.0.1: 401)."""
    from requests.adapters import HTTPAdapter

    class From2(HTTPAdapter):
        def init_poolmanager(self, *a, **kw):
            kw["source_address"] = ("127.0.0.2", 0)
            super().init_poolmanager(*a, **kw)

    other = requests.Session()
    other.mount("http://", From2())

    def ip_url(side, method, path, key, ip):
        expires = int(time.time()) + 600
        full = f"/v1/{side.account}/{path}"
        mac = hmac.new(key.encode(), f"ip={ip}\n{method}\n{expires}\n{full}".encode(),
                       hashlib.sha256).hexdigest()
        return f"{side.root}{full}?temp_url_sig={mac}&temp_url_expires={expires}" \
               f"&temp_url_ip_range={quote(ip, safe='')}"

    seen = []
    for label, side in sides(fed):
        key = uniq("akey")
        assert side.req("POST", "", {"X-Account-Meta-Temp-URL-Key": key}).status_code == 204
        links, data = side.container("links", "links"), side.container("data", "data")
        assert side.req("PUT", f"{data}/target", data=b"payload").status_code == 201
        assert side.req("PUT", f"{links}/sym", {"X-Symlink-Target": f"{data}/target"},
                        data=b"").status_code == 201
        answers = {}
        for path in (f"{data}/target", f"{links}/sym"):
            for ip in ("127.0.0.1", "127.0.0.0/8", "127.0.0.1/8", "10.0.0.0/8"):
                for who, client in (("same", requests), ("other", other)):
                    for method in ("GET", "HEAD"):
                        r = client.request(method, ip_url(side, method, path, key, ip))
                        answers[(path.split("/")[1], ip, who, method)] = (
                            r.status_code, r.content, r.headers.get("content-length"),
                            r.headers.get("www-authenticate"))
        seen.append((label, answers))
    ref = seen[0][1]
    assert ref[("target", "127.0.0.1", "same", "GET")][:2] == (200, b"payload")
    assert ref[("target", "127.0.0.1", "other", "GET")][0] == 401
    assert ref[("sym", "127.0.0.0/8", "other", "GET")][0] == 200
    same(seen)


def test_temp_url_reads_of_a_link_to_another_cluster_carry_tempurls_headers(fed):
    """Through a temp URL, a link followed to another cluster answers with what Swift's
    tempurl middleware adds and removes: `Content-Disposition` (the link's name,
    `filename`, `inline`), `Expires`, no private `X-Object-Meta-*`."""
    seen = []
    for label, side in sides(fed):
        key = uniq("akey")
        assert side.req("POST", "", {"X-Account-Meta-Temp-URL-Key": key}).status_code == 204
        links, data = side.container("links", "links"), side.container("data", "data")
        assert side.req("PUT", f"{data}/target", {"X-Object-Meta-Secret": "s",
                                                  "X-Object-Meta-Public-Ok": "p",
                                                  "Content-Disposition": "attachment; x"},
                        data=b"payload").status_code == 201
        assert side.req("PUT", f"{links}/sym", {"X-Symlink-Target": f"{data}/target"},
                        data=b"").status_code == 201
        answers = {}
        for extra in ("", "&inline", "&filename=a%20b%C3%A9.txt", "&inline&filename=x.txt"):
            for method in ("GET", "HEAD"):
                url = temp_url(side, method, f"{links}/sym", key)
                r = requests.request(method, url + extra)
                expires = int(url.split("temp_url_expires=")[1].split("&")[0])
                answers[(extra, method)] = (
                    r.status_code, r.content, r.headers.get("content-disposition"),
                    r.headers.get("expires") == time.strftime(
                        "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(expires)),
                    sorted(k.lower() for k in r.headers if k.lower().startswith("x-object-meta")))
        seen.append((label, answers))
    ref = seen[0][1]
    assert ref[("", "GET")][:4] == (200, b"payload", "attachment; x", True)
    assert ref[("&inline", "GET")][2] == "inline"
    same(seen)


VERSION_ID = re.compile(r"\d{10}\.\d{5}")
LAST_MODIFIED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")
VERSIONED_LISTINGS = [f"format={f}{q}" for f in ("json", "xml")
                      for q in ("", "&reverse=true", "&end_marker=l", "&marker=filler",
                                "&versions")]


def test_a_static_link_across_clusters_in_a_versioned_container(fed):
    """In a container with object versioning the current object is itself a link to its
    version: a static link across clusters stored there reads (current, an old
    `?version-id=`, through a temp URL) and is listed (JSON and XML, forward and
    reverse, `?versions`; byte for byte, times and version ids masked) as on one
    cluster."""
    seen = []
    for label, side in sides(fed):
        links = side.container("links", "links", {"X-Versions-Enabled": "true"})
        data = side.container("data", "data")
        etag = side.req("PUT", f"{data}/target", {"Content-Type": "text/x-t"},
                        data=b"payload").headers["etag"]
        h = {"X-Symlink-Target": f"{data}/target", "X-Symlink-Target-Etag": etag}
        assert side.req("PUT", f"{links}/l", h, data=b"").status_code == 201
        assert side.req("PUT", f"{links}/l", dict(h, **{"Content-Type": "text/y"}),
                        data=b"").status_code == 201
        versions = [e["version_id"] for e in
                    side.req("GET", f"{links}?format=json&versions&prefix=l").json()]
        answers = {}
        for name, query in (("current", ""), ("old", f"?version-id={versions[-1]}")):
            for method in ("GET", "HEAD"):
                r = side.req(method, f"{links}/l{query}")
                answers[(name, method)] = (
                    r.status_code, r.content, r.headers.get("content-type"),
                    r.headers.get("etag"),
                    r.headers.get("x-object-version-id") in versions,
                    (r.headers.get("content-location") or "").replace(data, "<data>")
                    .replace(side.account, "<acct>"))
        for query in VERSIONED_LISTINGS:
            r = side.req("GET", f"{links}?{query}")
            text = r.content.decode().replace(links, "<links>").replace(data, "<data>")
            answers[query] = (r.status_code, r.headers.get("content-type"), LAST_MODIFIED.sub(
                "<time>", VERSION_ID.sub("<version>", text.replace(side.account, "<acct>"))))
        key = uniq("akey")
        assert side.req("POST", "", {"X-Account-Meta-Temp-URL-Key": key}).status_code == 204
        r = requests.get(temp_url(side, "GET", f"{links}/l", key))
        answers["temp url"] = (r.status_code, r.content)
        assert side.req("PUT", f"{data}/target", data=b"changed").status_code == 201
        answers["broken"] = side.req("GET", f"{links}/l").status_code
        seen.append((label, answers))
    ref = seen[0][1]
    assert ref[("current", "GET")][:2] == (200, b"payload")
    assert ref[("old", "GET")][:2] == (200, b"payload")
    assert ref["broken"] == 409
    differ = {q: (seen[0][1][q], seen[1][1][q]) for q in VERSIONED_LISTINGS
              if seen[1][1][q] != seen[0][1][q]}
    assert not differ, "\n".join(f"{q}:\n  one cluster {a}\n  proxy       {b}"
                                  for q, (a, b) in differ.items())
    same(seen)


# ----- links across clusters to large objects ---------------------------------------------

LARGE_HEADERS = ("etag", "content-length", "content-type", "x-static-large-object",
                 "x-object-manifest", "content-range", "x-parts-count", "content-location",
                 "x-symlink-target-etag", "x-symlink-target-bytes")


def large_targets(side):
    """Containers `links` (east through the proxy), `data` (west) and `segs` (east), and
    in `data`: an SLO with its segments beside it (`slo`), one with its segments in
    `segs` (`slo-apart`, so one only the proxy assembles), and a DLO of each kind."""
    links, data = side.container("links", "links"), side.container("data", "data")
    segs = side.container("segs", "links")
    names = {"acct": side.account, "links": links, "data": data, "segs": segs}
    for c in (data, segs):
        for i in range(3):
            assert side.req("PUT", f"{c}/seg{i}",
                            data=bytes([65 + i]) * (3 + i)).status_code == 201
    for name, c in (("slo", data), ("slo-apart", segs)):
        manifest = [{"path": f"/{c}/seg{i}"} for i in range(3)]
        assert side.req("PUT", f"{data}/{name}?multipart-manifest=put",
                        data=json.dumps(manifest).encode()).status_code == 201
    for name, c in (("dlo", data), ("dlo-apart", segs)):
        assert side.req("PUT", f"{data}/{name}", {"X-Object-Manifest": f"{c}/seg"},
                        data=b"").status_code == 201

    def clean(value):
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        for tag, n in names.items():
            value = value.replace(n, f"<{tag}>")
        return value
    return names, clean


def large_answer(r, clean):
    md5 = hashlib.md5(r.content).hexdigest()
    body = r.content if len(r.content) < 400 else md5.encode()
    headers = {h: clean(r.headers[h]) for h in LARGE_HEADERS if h in r.headers}
    if r.content and headers.get("etag") == md5:  # a manifest naming per-side containers
        headers["etag"] = "<md5 of the body>"
    return (r.status_code, clean(body), headers)


def test_static_links_across_clusters_to_large_objects_are_made_as_on_one_cluster(fed):
    """A static link to an SLO names the manifest's ETag (what `?multipart-manifest=get`
    shows, quoted or not), as Swift's test_static_link_target_slo_manifest does; the
    large object's own ETag is refused (409). A DLO's is the manifest object's ETag.
    The link is listed as Swift lists it (`slo_etag`, `symlink_bytes` the total)."""
    seen = []
    for label, side in sides(fed):
        names, clean = large_targets(side)
        links, data = names["links"], names["data"]
        answers = {}
        for target in ("slo", "slo-apart", "dlo", "dlo-apart"):
            manifest = side.req("HEAD", f"{data}/{target}?multipart-manifest=get")
            whole = side.req("HEAD", f"{data}/{target}")
            if target.startswith("slo"):  # its JSON names the (per side) containers
                names[f"{target} manifest"] = manifest.headers["etag"]
            answers[(target, "etags")] = (clean(manifest.headers["etag"]), whole.headers["etag"])
            for kind, etag in (("manifest", manifest.headers["etag"]),
                               ("quoted", '"%s"' % manifest.headers["etag"].strip('"')),
                               ("large", whole.headers["etag"]),
                               ("large unquoted", whole.headers["etag"].strip('"'))):
                r = side.req("PUT", f"{links}/{target}-{kind}",
                             {"X-Symlink-Target": f"{data}/{target}",
                              "X-Symlink-Target-Etag": etag}, data=b"")
                answers[(target, kind)] = (r.status_code, clean(r.content))
                r = side.req("HEAD", f"{links}/{target}-{kind}?symlink=get")
                answers[(target, kind, "itself")] = large_answer(r, clean)
        listing = side.req("GET", f"{links}?format=json")
        answers["listing"] = clean(LAST_MODIFIED.sub("<time>", listing.text))
        xml = side.req("GET", f"{links}?format=xml")
        answers["xml"] = clean(LAST_MODIFIED.sub("<time>", xml.text))
        seen.append((label, answers))
    ref = seen[0][1]
    assert ref[("slo", "manifest")][0] == 201 and ref[("slo", "large")][0] == 409
    assert '"slo_etag"' in ref["listing"]
    differ = {k: (seen[0][1][k], seen[1][1][k]) for k in ref if seen[1][1][k] != ref[k]}
    assert not differ, "\n".join(f"{k}:\n  one cluster {a}\n  proxy       {b}"
                                  for k, (a, b) in differ.items())


LARGE_READS = [("GET", "", {}), ("HEAD", "", {}), ("GET", "", {"Range": "bytes=2-7"}),
               ("GET", "?multipart-manifest=get", {}), ("HEAD", "?multipart-manifest=get", {}),
               ("GET", "?multipart-manifest=get&format=raw", {}),
               ("GET", "?part-number=1", {}), ("HEAD", "?part-number=2", {}),
               ("GET", "?part-number=9", {})]


def test_links_across_clusters_to_large_objects_read_as_on_one_cluster(fed):
    """Reads of links (static and dynamic) to SLOs and DLOs on another cluster, with the
    client's query (`multipart-manifest=get`, `format=raw`, `part-number`) and `Range`
    applied to the target as Swift's middlewares apply them (symlink behind slo/dlo);
    also for an SLO whose segments are on a third container's cluster."""
    seen = []
    for label, side in sides(fed):
        names, clean = large_targets(side)
        links, data = names["links"], names["data"]
        for target in ("slo", "slo-apart"):
            names[f"{target} manifest"] = side.req(
                "HEAD", f"{data}/{target}?multipart-manifest=get").headers["etag"]
        answers = {}
        for target in ("slo", "slo-apart", "dlo", "dlo-apart"):
            etag = side.req("HEAD", f"{data}/{target}?multipart-manifest=get").headers["etag"]
            kinds = [("static", {"X-Symlink-Target-Etag": etag})]
            if target.endswith("apart"):  # (budget: dynamic links to the rest elsewhere)
                kinds.append(("dynamic", {}))
            for kind, h in kinds:
                r = side.req("PUT", f"{links}/{target}-{kind}",
                             dict(h, **{"X-Symlink-Target": f"{data}/{target}"}), data=b"")
                assert r.status_code == 201, (label, target, kind, r.text)
                for method, query, headers in LARGE_READS:
                    r = side.req(method, f"{links}/{target}-{kind}{query}", headers)
                    answers[(target, kind, method, query, str(headers))] = large_answer(r, clean)
        seen.append((label, answers))
    ref = seen[0][1]
    assert ref[("slo-apart", "static", "GET", "", "{}")][1] == "AAABBBBCCCCC"
    assert ref[("slo", "static", "GET", "?part-number=1", "{}")][:2] == (206, "AAA")
    differ = {k: (seen[0][1][k], seen[1][1][k]) for k in ref if seen[1][1][k] != ref[k]}
    assert not differ, "\n".join(f"{k}:\n  one cluster {a}\n  proxy       {b}"
                                  for k, (a, b) in differ.items())


def test_a_listing_longer_than_a_mebibyte_streams_through_as_the_cluster_lists_it(fed):
    """Listings past 1 MiB are streamed by the proxy entry by entry: a container of
    550 objects with 1,000-byte names (`é` six bytes in JSON, `&` five in XML;
    bulk-uploaded straight into its cluster), in JSON and XML, forward and reverse, reads through the proxy
    byte for byte as from its cluster."""
    import io
    import tarfile
    proxy, clusters = fed
    via = Side(proxy.auth_url, {"links": "east"})
    direct = Side(clusters["east"].auth_url, {})
    name = via.container("long", "links")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(550):
            info = tarfile.TarInfo(f"{'é' * 298}{'&' * 400}{i:04d}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    r = direct.req("PUT", f"{name}?extract-archive=tar", {"Accept": "application/json"},
                   data=buf.getvalue())
    assert r.status_code == 200 and r.json()["Number Files Created"] == 550, r.text[:600]
    for query in ("format=json", "format=xml", "format=json&reverse=true",
                  "format=xml&reverse=true"):
        a = direct.req("GET", f"{name}?{query}")
        b = via.req("GET", f"{name}?{query}")
        assert len(a.content) > 1024 * 1024
        assert (b.status_code, b.headers.get("content-type")) == (
            a.status_code, a.headers.get("content-type"))
        assert "content-length" not in b.headers  # streamed, not buffered
        assert b.content == a.content, query

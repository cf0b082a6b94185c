"""The wire level through the federation proxy, against real Swift clusters: what any
request or answer looks like (header case, Connection, the trans-id, header limits,
Expect: 100-continue, Swift's URL checks and listing parameters).

Each expected value is read from a real cluster in the same test, then the proxy must
give the same."""

import http.client
import re
import socket
import time
import urllib.parse
import uuid

import pytest
import requests

USER, KEY = "test:tester", "testing"
# Swift's own clients read more headers than http.client's default 100 (bufferedhttp).
http.client._MAXHEADERS = 1000
TRANS_ID = re.compile(r"^tx[0-9a-f]{21}-[0-9a-f]{10}")


def uniq(prefix="w"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Endpoint:
    """A storage URL and token: the proxy's or one cluster's."""

    def __init__(self, auth_url):
        r = requests.get(auth_url, headers={"X-Auth-User": USER, "X-Auth-Key": KEY}, timeout=10)
        r.raise_for_status()
        self.url = r.headers["X-Storage-Url"]
        self.token = r.headers["X-Auth-Token"]
        parsed = urllib.parse.urlsplit(self.url)
        self.host, self.port, self.path = parsed.hostname, parsed.port, parsed.path

    def raw(self, method, path, headers=(), body=None, token=True):
        """One request with http.client: (status, [(name, value)] as sent, body)."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            c.putrequest(method, path, skip_accept_encoding=True)
            if token:
                c.putheader("X-Auth-Token", self.token)
            for k, v in headers:
                c.putheader(k, v)
            if body is not None:
                c.putheader("Content-Length", str(len(body)))
            c.endheaders(body)
            r = c.getresponse()
            data = r.read()
            return r.status, r.getheaders(), data
        finally:
            c.close()

    def first_status_line(self, head: bytes) -> bytes:
        """Sends a request head only (no body) and returns the first status line."""
        with socket.create_connection((self.host, self.port), timeout=10) as s:
            s.sendall(head)
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            return buf.split(b"\r\n", 1)[0]


@pytest.fixture(scope="module")
def fed(proxy):
    ep = Endpoint(proxy.auth_url)
    # Earlier modules stop and restart clusters: wait until the proxy's health probe
    # sees every cluster again (an account request needs them all).
    deadline = time.monotonic() + 60
    while ep.raw("HEAD", ep.path)[0] != 204 and time.monotonic() < deadline:
        time.sleep(0.5)
    return ep


@pytest.fixture(scope="module")
def east(clusters):
    return Endpoint(clusters["east"].auth_url)


def names(headers):
    return [k for k, _ in headers]


def header(headers, name):
    vals = [v for k, v in headers if k.lower() == name.lower()]
    return vals[0] if vals else None


def test_header_names_keep_swifts_case(fed, east):
    for ep in (east, fed):
        c = uniq("case")
        assert ep.raw("PUT", f"{ep.path}/{c}")[0] in (201, 202)
        meta = [("X-Object-Meta-Color", "blUe"), ("X-Object-Meta-Food", "PizZa")]
        assert ep.raw("PUT", f"{ep.path}/{c}/o", meta, b"x")[0] == 201
        status, got, _ = ep.raw("GET", f"{ep.path}/{c}/o")
        assert status == 200
        if ep is east:
            swift_names = set(names(got))
            continue
        # The proxy sends the names as the cluster spelled them.
        assert {"X-Object-Meta-Color", "X-Object-Meta-Food", "Etag", "Content-Type",
                "Content-Length", "Last-Modified", "X-Timestamp", "X-Trans-Id",
                "X-Openstack-Request-Id"} <= set(names(got)), got
        assert set(names(got)) == swift_names, (got, swift_names)
        # The proxy's own answers are spelled as Swift's too.
        status, got, _ = ep.raw("GET", "/v1/")
        assert {"Content-Type", "Content-Length", "X-Trans-Id", "X-Openstack-Request-Id"} <= set(
            names(got)), got


def test_connection_header_as_swift_sends_it(fed, east):
    for ep in (east, fed):
        _, got, _ = ep.raw("HEAD", ep.path)
        assert header(got, "connection") is None, got
        _, got, _ = ep.raw("HEAD", ep.path, [("Connection", "keep-alive")])
        assert header(got, "connection").lower() == "keep-alive", got


def test_trans_ids_have_swifts_form_on_every_answer(fed, east):
    for path in (fed.path, "/v1//c/o", "/v1/", "/info"):
        _, got, _ = fed.raw("GET", path)
        tx = header(got, "x-trans-id")
        assert tx and TRANS_ID.match(tx), (path, got)
        assert header(got, "x-openstack-request-id") == tx, (path, got)
    _, got, _ = fed.raw("HEAD", fed.path, [("X-Trans-Id-Extra", "my-job")])
    assert header(got, "x-trans-id").endswith("-my-job"), got


@pytest.mark.parametrize("path", ["/v1/", "/v1", "/v1//c/o", "/v1/AUTH_test//o", "/v1///o",
                                  "/", "/v2/AUTH_test", "/info%20asdf"])
def test_urls_are_checked_as_swift_does(fed, east, path):
    want = east.raw("GET", path)
    got = fed.raw("GET", path)
    assert (got[0], got[2]) == (want[0], want[2]), (path, want, got)
    assert header(got[1], "content-type") == header(want[1], "content-type")


def test_metadata_limits_are_swifts(fed, east):
    for ep in (east, fed):
        c = uniq("meta")
        assert ep.raw("PUT", f"{ep.path}/{c}")[0] in (201, 202)
        answers = []
        for n in (90, 91, 190):
            meta = [(f"X-Object-Meta-K{i}", "v") for i in range(n)]
            answers.append(ep.raw("PUT", f"{ep.path}/{c}/o{n}", meta, b"x"))
            answers.append(ep.raw("POST", f"{ep.path}/{c}/o90", meta))
        statuses = [(s, b) for s, _, b in answers]
        if ep is east:
            want = statuses
            assert want[2] == (400, b"Too many metadata items; max 90"), want
        else:
            assert statuses == want


def test_an_account_with_90_metadata_items_stays_readable(fed, east, clusters):
    # Up to Swift's limit of 90 items, counting what other tests left on the account.
    west = Endpoint(clusters["west"].auth_url)
    held = max(sum(1 for k in names(ep.raw("HEAD", ep.path)[1])
                   if k.lower().startswith("x-account-meta-")) for ep in (east, west))
    meta = [(f"X-Account-Meta-Wire{i}", "v") for i in range(90 - held)]
    assert len(meta) >= 80, held
    try:
        assert fed.raw("POST", fed.path, meta)[0] == 204
        status, got, _ = fed.raw("GET", fed.path + "?format=json")
        assert status in (200, 204)
        assert header(got, f"X-Account-Meta-Wire{len(meta) - 1}") == "v"
        assert fed.raw("HEAD", fed.path)[0] == 204
    finally:
        fed.raw("POST", fed.path, [(k, "") for k, _ in meta])


def test_too_many_headers_are_refused_as_swift_does(fed, east):
    many = [(f"X-Foo-{i}", "v") for i in range(260)]
    want = east.raw("HEAD", east.path, many)[0]
    assert want == 431
    assert fed.raw("HEAD", fed.path, many)[0] == want


def test_bad_transfer_encodings_and_lengths(fed, east):
    c = uniq("te")
    for ep in (east, fed):
        assert ep.raw("PUT", f"{ep.path}/{c}")[0] in (201, 202)
    for hdrs in ([("Transfer-Encoding", "gzip,chunked")], []):
        got = []
        for ep in (east, fed):
            head = (f"PUT {ep.path}/{c}/o HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {ep.token}\r\n"
                    + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "Connection: close\r\n\r\n")
            if hdrs:
                head += "0\r\n\r\n"
            with socket.create_connection((ep.host, ep.port), timeout=10) as s:
                s.sendall(head.encode())
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            status = data.split(b"\r\n", 1)[0].split(b" ")[1]
            body = data.split(b"\r\n\r\n", 1)[1]
            got.append((status, body))
        assert got[0] == got[1], (hdrs, got)
        assert got[0][0] in (b"501", b"411"), got


def test_expect_100_continue_gets_the_refusal_first(fed, east):
    c = uniq("expect")
    for ep in (east, fed):
        assert ep.raw("PUT", f"{ep.path}/{c}")[0] in (201, 202)

    def head(ep, path, length="10", token=None, extra=""):
        token = token or ep.token
        cl = f"Content-Length: {length}\r\n" if length is not None else ""
        return (f"PUT {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n{cl}"
                f"Expect: 100-continue\r\n{extra}\r\n").encode()

    cases = {
        "too large": lambda ep: head(ep, f"{ep.path}/{c}/o", length=str(6 * 1024 ** 3)),
        "no container": lambda ep: head(ep, f"{ep.path}/{uniq('none')}/o"),
        "bad token": lambda ep: head(ep, f"{ep.path}/{c}/o", token="AUTH_tkbogus"),
        "no length": lambda ep: head(ep, f"{ep.path}/{c}/o", length=None),
        "bad url": lambda ep: head(ep, "/v1/"),
        "accepted": lambda ep: head(ep, f"{ep.path}/{c}/o"),
    }
    for what, make in cases.items():
        want = east.first_status_line(make(east)).split(b" ")[1]
        got = fed.first_status_line(make(fed)).split(b" ")[1]
        assert got == want, (what, want, got)
        if what == "accepted":
            assert got == b"100"
        else:
            assert got != b"100", what


def test_account_listing_parameters_swift_tolerates(fed, east):
    p, q = uniq("dl"), uniq("dl")
    suffixes = ["xab1", "xab2", "yab", "z"]
    for s in suffixes:
        assert fed.raw("PUT", f"{fed.path}/{p}{s}")[0] in (201, 202)
        assert east.raw("PUT", f"{east.path}/{q}{s}")[0] in (201, 202)
    try:
        # One cluster rolls names up at the first "ab" after the prefix...
        status, _, body = east.raw("GET", f"{east.path}?prefix={q}&delimiter=ab")
        assert status == 200
        want = [n[len(q):] for n in body.decode().split()]
        assert want == ["xab", "yab", "z"]
        # ... and so does the proxy over containers on both clusters.
        status, _, body = fed.raw("GET", f"{fed.path}?prefix={p}&delimiter=ab")
        assert status == 200
        assert [n[len(p):] for n in body.decode().split()] == want
        for lim in ("limit=-1", "limit=abc", "limit="):
            want = east.raw("GET", f"{east.path}?prefix={q}&{lim}")
            got = fed.raw("GET", f"{fed.path}?prefix={p}&{lim}")
            assert (want[0], got[0]) == (200, 200), lim
            assert len(got[2].split()) == len(want[2].split()) == len(suffixes), (lim, got)
        want = east.raw("GET", f"{east.path}?limit=10001")
        got = fed.raw("GET", f"{fed.path}?limit=10001")
        assert (got[0], got[2]) == (want[0], want[2]) == (412, b"Maximum limit is 10000")
    finally:
        for s in suffixes:
            fed.raw("DELETE", f"{fed.path}/{p}{s}")
            east.raw("DELETE", f"{east.path}/{q}{s}")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("fmt", ["", "json", "xml"])
def test_empty_account_answers_carry_length_and_type(fed, east, method, fmt):
    q = f"?prefix={uniq('nothing')}" + (f"&format={fmt}" if fmt else "")
    want = east.raw(method, east.path + q)
    got = fed.raw(method, fed.path + q)
    assert got[0] == want[0]
    for h in ("content-type", "content-length"):
        assert header(got[1], h) == header(want[1], h), (h, want, got)
    if want[0] == 204:
        assert header(got[1], "content-length") == "0"


def test_options_and_unknown_methods_on_the_account(fed, east):
    for method in ("OPTIONS", "LICK", "PUT", "DELETE"):
        want = east.raw(method, east.path)
        got = fed.raw(method, fed.path)
        assert got[0] == want[0], (method, want, got)
        assert header(got[1], "allow") == header(want[1], "allow"), method
        if method == "OPTIONS":
            assert got[0] == 200


def test_an_empty_storage_policy_means_the_default(fed, east):
    c = uniq("policy")
    status, _, body = fed.raw("PUT", f"{fed.path}/{c}", [("X-Storage-Policy", "")])
    assert status == 201, body
    status, got, _ = fed.raw("HEAD", f"{fed.path}/{c}")
    assert header(got, "x-storage-policy"), got
    fed.raw("DELETE", f"{fed.path}/{c}")


def test_long_lines_are_refused_as_swifts_server_does(fed, east):
    for value, path_len in ((9000, None), (8100, None), (None, 9000), (None, 8000)):
        got = []
        for ep in (east, fed):
            hdrs = [("X-Foo", "a" * value)] if value else []
            path = f"{ep.path}/{'p' * path_len}" if path_len else ep.path
            got.append(ep.raw("HEAD", path, hdrs)[0])
        assert got[0] == got[1], (value, path_len, got)


def test_raw_invalid_utf8_in_a_path_is_swifts_412(fed, east):
    got = []
    for ep in (east, fed):
        head = (f"PUT {ep.path}/".encode() + "é-ok".encode()[::-1]
                + f" HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {ep.token}\r\n"
                  f"Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        with socket.create_connection((ep.host, ep.port), timeout=10) as s:
            s.sendall(head)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        got.append((data.split(b"\r\n", 1)[0].split(b" ")[1], data.split(b"\r\n\r\n", 1)[1]))
    assert got[0] == (b"412", b"Invalid UTF8 or contains NULL"), got
    assert got[1] == got[0]


def service_token(auth_url):
    r = requests.get(auth_url, headers={"X-Auth-User": "test5:tester5", "X-Auth-Key": "testing5"},
                     timeout=10)
    r.raise_for_status()
    return r.headers["X-Auth-Token"]


def test_service_tokens_reach_the_service_account(fed, east, proxy, clusters):
    # Swift's service tokens: a user token plus a service user's token (X-Service-Token)
    # open the user's SERVICE_ account; the user's token alone does not. Through the
    # proxy both are proxy tokens, each sent to the cluster as that cluster's token.
    for ep, auth_url in ((east, clusters["east"].auth_url), (fed, proxy.auth_url)):
        service = service_token(auth_url)
        account = ep.path.replace("/AUTH_", "/SERVICE_", 1)
        path = f"{account}/{uniq('svc')}"
        alone, _, _ = ep.raw("PUT", path, body=b"")
        both, _, _ = ep.raw("PUT", path, [("X-Service-Token", service)], body=b"")
        head, _, _ = ep.raw("HEAD", path, [("X-Service-Token", service)])
        assert (alone, both, head) == (403, 201, 204), (auth_url, alone, both, head)
        ep.raw("DELETE", path, [("X-Service-Token", service)])

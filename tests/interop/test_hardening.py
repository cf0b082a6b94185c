"""Hardening (issue 16): slow clients and faults, against real Swift clusters and a real
Glance, with raw sockets and real clients.

- A client whose request body stalls or trickles is answered 408 (Swift's body) within
  the configured `client_timeout`, its connection closed, what was being written to a
  cluster aborted (no object appears there), while other clients are served meanwhile;
  the same for an image upload through the edge."""

import socket
import threading
import time

import pytest
import requests
import swiftclient.client as swc

import peers

USER, KEY = "test:tester", "testing"
# The servers' client_timeout in these tests (Swift's default is 60 s).
CLIENT_TIMEOUT = 2.0
# What a loaded 2-core machine may add to it before the answer is read.
SLACK = 4.0
SWIFT_408 = ("<html><h1>Request Timeout</h1><p>The server has waited too long for the "
             "request to be sent by the client.</p></html>")


@pytest.fixture(scope="module")
def bins():
    return {n: peers.cargo_bin(n) for n in ("swift-federation-proxy", "glance-edge-cache")}


@pytest.fixture(scope="module")
def slow_proxy(workdir, clusters, bins):
    p = peers.FederationProxy(workdir / "hardening-proxy", [clusters["east"], clusters["west"]],
                              extra_toml=f'client_timeout = "{CLIENT_TIMEOUT}s"\n')
    p.start(bins["swift-federation-proxy"])
    yield p
    p.stop()


def login(proxy):
    r = requests.get(proxy.auth_url, headers={"X-Auth-User": USER, "X-Auth-Key": KEY}, timeout=30)
    r.raise_for_status()
    return r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]


def read_all(s: socket.socket, limit: float) -> bytes:
    """Everything the server sends until it closes, or what came within `limit` s."""
    s.settimeout(limit)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b
    except (socket.timeout, ConnectionResetError):
        return out


def stalled_put(host_port, path: str, token: str, framing: str, how: str):
    """PUTs `path` announcing a 1 MiB body, sends 10 bytes of it, then stops (`stop`) or
    sends one byte every 0.5 s (`trickle`). Returns (answer, seconds from the last
    full-speed byte to the connection's close, closed)."""
    host, port = host_port
    s = socket.create_connection((host, port), timeout=30)
    head = (f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\nX-Auth-Token: {token}\r\n"
            "Content-Type: application/octet-stream\r\n")
    if framing == "length":
        s.sendall((head + "Content-Length: 1048576\r\n\r\n").encode() + b"0123456789")
    else:
        s.sendall((head + "Transfer-Encoding: chunked\r\n\r\n").encode() + b"a\r\n0123456789\r\n")
    started = time.monotonic()
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.5):
            try:
                s.sendall(b"1\r\nx\r\n" if framing == "chunked" else b"x")
            except OSError:
                return

    t = threading.Thread(target=trickle, daemon=True)
    if how == "trickle":
        t.start()
    out = read_all(s, CLIENT_TIMEOUT + SLACK + 10)
    took = time.monotonic() - started
    # Closed: a read now gives EOF (or a reset), not a timeout.
    s.settimeout(1)
    try:
        closed = s.recv(1) == b""
    except socket.timeout:
        closed = False
    except OSError:
        closed = True
    stop.set()
    s.close()
    return out.decode(errors="replace"), took, closed


@pytest.mark.parametrize("framing,how", [("length", "stop"), ("chunked", "stop"),
                                         ("length", "trickle")])
def test_a_stalled_upload_is_cut_off_with_408_and_leaves_no_object(
        slow_proxy, clusters, framing, how):
    url, token = login(slow_proxy)
    container = f"slow-{framing}-{how}"
    c = swc.Connection(preauthurl=url, preauthtoken=token, retries=0)
    c.put_container(container, headers={"X-Container-Attr-Cluster": "east"})
    c.put_object(container, "other", b"served meanwhile")
    account = url.rsplit("/", 1)[1]
    path = f"/v1/{account}/{container}/stalled"

    # Other clients are served while the slow one holds its connection.
    served, slowest = [], [0.0]
    done = threading.Event()

    def others():
        while not done.is_set():
            t0 = time.monotonic()
            r = requests.get(f"{url}/{container}/other", headers={"X-Auth-Token": token}, timeout=30)
            slowest[0] = max(slowest[0], time.monotonic() - t0)
            served.append(r.status_code)
            time.sleep(0.2)

    t = threading.Thread(target=others, daemon=True)
    t.start()
    try:
        answer, took, closed = stalled_put(("127.0.0.1", slow_proxy.port), path, token, framing, how)
    finally:
        done.set()
        t.join(30)
    assert answer.startswith("HTTP/1.1 408"), answer
    assert answer.endswith(SWIFT_408), answer
    assert closed, "the connection stayed open after the 408"
    assert CLIENT_TIMEOUT * 0.9 <= took <= CLIENT_TIMEOUT + SLACK, took
    assert len(served) >= 3 and set(served) == {200}, served
    assert slowest[0] < CLIENT_TIMEOUT, slowest

    # No object, on the cluster itself or through the proxy; the container's listing on
    # the cluster does not name it.
    east_url, east_token = clusters["east"].authenticate(USER, KEY)
    time.sleep(0.5)
    r = requests.head(f"{east_url}/{container}/stalled", headers={"X-Auth-Token": east_token}, timeout=30)
    assert r.status_code == 404, r.status_code
    r = requests.get(f"{east_url}/{container}", headers={"X-Auth-Token": east_token}, timeout=30)
    assert r.text.split() == ["other"], r.text
    r = requests.head(f"{url}/{container}/stalled", headers={"X-Auth-Token": token}, timeout=30)
    assert r.status_code == 404


def test_a_slow_but_steady_upload_is_not_cut_off(slow_proxy):
    """64 KiB every second (one chunk a second, under the 2 s client_timeout), 8 chunks
    long: longer than the timeout in all, but every chunk in time: stored whole."""
    url, token = login(slow_proxy)
    c = swc.Connection(preauthurl=url, preauthtoken=token, retries=0)
    c.put_container("slow-steady")
    chunk = b"s" * 65536

    def body():
        for _ in range(8):
            yield chunk
            time.sleep(1.0)

    r = requests.put(f"{url}/slow-steady/steady", data=body(), headers={"X-Auth-Token": token},
                     timeout=60)
    assert r.status_code == 201, r.text
    assert c.head_object("slow-steady", "steady")["content-length"] == str(8 * 65536)


@pytest.fixture(scope="module")
def central(workdir):
    g = peers.GlanceCentral(workdir / "hardening-central")
    g.start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def slow_edge(workdir, central, bins):
    e = peers.GlanceEdge(workdir / "hardening-edge", central.endpoint,
                         extra_toml=f'client_timeout = "{CLIENT_TIMEOUT}s"\n')
    e.start(bins["glance-edge-cache"])
    yield e
    e.stop()


def test_a_stalled_image_upload_through_the_edge_is_cut_off_with_408(slow_edge, central):
    r = requests.post(f"{slow_edge.endpoint}/v2/images", json={
        "name": "stalled", "disk_format": "raw", "container_format": "bare"}, timeout=30)
    assert r.status_code == 201, r.text
    image = r.json()["id"]
    answer, took, closed = stalled_put(("127.0.0.1", slow_edge.port), f"/v2/images/{image}/file",
                                       "x", "length", "stop")
    assert answer.startswith("HTTP/1.1 408"), answer
    assert closed
    assert CLIENT_TIMEOUT * 0.9 <= took <= CLIENT_TIMEOUT + SLACK, took
    # The central holds no data for it: the upload was aborted, not completed short.
    deadline = time.monotonic() + 30
    while True:
        doc = requests.get(f"{central.endpoint}/v2/images/{image}", timeout=30).json()
        if doc["status"] != "saving" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert doc["status"] == "queued" and doc["size"] is None, doc
    # The edge still serves.
    assert requests.get(f"{slow_edge.endpoint}/v2/images", timeout=30).status_code == 200

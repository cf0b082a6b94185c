"""The edge cache against a central Glance that stalls in the middle of an image: a TCP
relay under the test's control sits between the edge and the real central, forwards an
answer's first bytes, then stops forwarding without closing (the connection stays open,
nothing arrives). The edge's `read_timeout` (1 s here) ends the wait, the fill resumes
with `Range: bytes=<have>-` (as the relay records), and the client sees one continuous,
verified body; when every attempt stalls, a cut body and a later refill; when the
central ignores `Range` (the relay strips it, the central answers 200 with the whole
image), the prefix is discarded."""

import hashlib
import os
import re
import socket
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import peers

MIB = 1024 * 1024
DATA_PATH = re.compile(rb"^GET /v2/images/[0-9a-f-]+/file ")


def read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    """An HTTP message's head (without its blank line) and the bytes read past it; the
    head is None when the connection closed first (the bytes are all that came)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        piece = sock.recv(65536)
        if not piece:
            return None, buf
        buf += piece
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


class Relay:
    """Forwards TCP connections to `target_port`. For each image-data GET in turn,
    `plan` may say how many bytes of the answer's body to forward (after its whole
    head) before it stalls; once the plan is spent, `stall_every` stalls every one after
    that many. A stalled answer forwards
    nothing more until `release` is set (or the relay closes), its connections kept
    open. `strip_range` removes the `Range` header of image-data GETs, so the central
    answers them whole. Every request is sent with `Connection: close` (one request a
    connection, so the plan counts requests). `ranges` records each image-data GET's
    `Range` header (None without)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        # accept() wakes up now and then to see whether the relay was closed.
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.plan: list[int | None] = []
        self.stall_every: int | None = None
        self.strip_range = False
        self.ranges: list[str | None] = []
        self.stalls = 0
        self.release = threading.Event()
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self.lock:
            self.plan, self.stall_every, self.strip_range, self.ranges = [], None, False, []

    def close(self) -> None:
        self.closed.set()
        self.release.set()
        self.thread.join(timeout=5)
        self.listener.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            with self.lock:
                self.socks.append(client)
            head, rest = read_head(client)
            if head is None:
                return
            lines = head.split(b"\r\n")
            is_data = bool(DATA_PATH.match(lines[0]))
            kept = [lines[0]]
            rng = None
            for line in lines[1:]:
                name = line.split(b":", 1)[0].strip().lower()
                if name == b"range":
                    rng = line.split(b":", 1)[1].strip().decode()
                    if is_data and self.strip_range:
                        continue
                if name == b"connection":
                    continue
                kept.append(line)
            kept.append(b"Connection: close")
            limit = None
            if is_data:
                with self.lock:
                    self.ranges.append(rng)
                    limit = self.plan.pop(0) if self.plan else self.stall_every
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.socks.append(upstream)
            upstream.sendall(b"\r\n".join(kept) + b"\r\n\r\n" + rest)
            gone = threading.Event()
            threading.Thread(target=self._pump, args=(client, upstream, gone), daemon=True).start()
            # The answer's head passes whole; the limit counts body bytes.
            head, body = read_head(upstream)
            if head is None:
                client.sendall(body)
                return
            client.sendall(head + b"\r\n\r\n")
            sent, data = 0, body
            while True:
                if limit is not None and sent + len(data) >= limit:
                    client.sendall(data[: limit - sent])
                    with self.lock:
                        self.stalls += 1
                    # Stalled: the connection stays open, nothing more is sent, until
                    # the edge gives up on it (then the central's connection is closed
                    # too, freeing its worker) or the test releases it.
                    while not self.release.is_set() and not gone.is_set():
                        gone.wait(0.1)
                    if self.closed.is_set() or gone.is_set():
                        return
                    data, limit = data[limit - sent:], None
                client.sendall(data)
                sent += len(data)
                data = upstream.recv(65536)
                if not data:
                    break
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, gone: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        gone.set()


@pytest.fixture(scope="module")
def central(workdir):
    g = peers.GlanceCentral(workdir / "glance-stall-central")
    g.start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def relay(central):
    r = Relay(central.port)
    yield r
    r.close()


@pytest.fixture(scope="module")
def metrics_port():
    return peers.free_port()


@pytest.fixture(scope="module")
def edge(workdir, relay, metrics_port):
    e = peers.GlanceEdge(
        workdir / "glance-stall-edge", relay.endpoint,
        extra_toml=(f'metrics_listen = "127.0.0.1:{metrics_port}"\n'
                    'read_timeout = "1s"\n'
                    "fill_resume_attempts = 2\n"
                    'fill_resume_backoff = "100ms"\n'))
    e.metrics = metrics_port
    e.start(peers.cargo_bin("glance-edge-cache"))
    yield e
    e.stop()


@pytest.fixture(autouse=True)
def fresh_relay(relay):
    relay.reset()
    yield
    relay.reset()


def new_image(central, mib: int, name: str) -> tuple[str, bytes]:
    data = os.urandom(mib * MIB)
    r = requests.post(central.endpoint + "/v2/images", json={
        "name": name, "disk_format": "raw", "container_format": "bare", "visibility": "public",
    }, timeout=30)
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    r = requests.put(f"{central.endpoint}/v2/images/{image_id}/file", data=data,
                     headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert r.status_code == 204, r.text
    return image_id, data


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def raw_get(edge, path: str, timeout: float = 30.0, headers=None) -> tuple[int, dict, bytes, float]:
    """GET over a plain socket, reading until the edge closes: (status, headers, the body
    bytes that arrived, seconds taken). A cut body is simply shorter than
    Content-Length."""
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", edge.port), timeout=timeout)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n".encode())
    buf = b""
    try:
        while data := s.recv(1 << 20):
            buf += data
    except (ConnectionResetError, socket.timeout):
        pass
    finally:
        s.close()
    took = time.monotonic() - t0
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.decode().partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body, took


def metric(port: int, name: str, **labels) -> float:
    r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert r.status_code == 200, r.text
    total = 0.0
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def cached_ids(edge) -> set[str]:
    r = requests.get(edge.endpoint + "/v2/cache", timeout=10)
    assert r.status_code == 200, r.text
    return {c["image_id"] for c in r.json()["cached_images"]}


def incomplete_files(edge) -> list[str]:
    d = edge.cache_dir / "blobs" / "incomplete"
    return sorted(os.listdir(d)) if d.exists() else []


def test_central_answers_ranges_as_the_edge_resumes_them(central):
    """What the real central answers to the request a resume sends: 206 with
    Content-Range and the whole image's Content-MD5; 416 past the end."""
    image_id, data = new_image(central, 1, "range-probe")
    url = f"{central.endpoint}/v2/images/{image_id}/file"
    r = requests.get(url, headers={"Range": f"bytes=1000-{len(data) - 1}"}, timeout=30)
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert r.content == data[1000:]
    assert r.headers["Content-MD5"] == md5(data)
    r = requests.get(url, headers={"Range": f"bytes={len(data)}-"}, timeout=30)
    assert r.status_code == 416


def test_stall_mid_body_resumes_with_range(edge, central, relay):
    image_id, data = new_image(central, 8, "stall-once")
    relay.plan = [3 * MIB]
    stalls, resumes = (metric(edge.metrics, "stackfed_cache_fill_interruptions_total", cause="stall"),
                       metric(edge.metrics, "stackfed_cache_fill_resumes_total", outcome="ranged"))
    status, hdrs, body, took = raw_get(edge, f"/v2/images/{image_id}/file")
    assert status == 200, hdrs
    assert len(body) == len(data) and md5(body) == md5(data), (len(body), took, edge.log())
    assert took >= 0.9, took
    print(f"stalled once: {len(data)} bytes in {took:.2f} s")
    assert relay.ranges[0] is None
    m = re.fullmatch(r"bytes=(\d+)-(\d+)", relay.ranges[1] or "")
    assert m and int(m.group(1)) == 3 * MIB and int(m.group(2)) == len(data) - 1, relay.ranges
    assert len(relay.ranges) == 2, relay.ranges
    assert image_id in cached_ids(edge)
    assert incomplete_files(edge) == []
    assert metric(edge.metrics, "stackfed_cache_fill_interruptions_total", cause="stall") == stalls + 1
    assert metric(edge.metrics, "stackfed_cache_fill_resumes_total", outcome="ranged") == resumes + 1
    # Served from the verified blob now: the central is not asked for the data again.
    status, _, body, _ = raw_get(edge, f"/v2/images/{image_id}/file")
    assert status == 200 and md5(body) == md5(data)
    assert len(relay.ranges) == 2


def test_two_clients_on_one_stalled_fill_see_one_continuous_body(edge, central, relay):
    image_id, data = new_image(central, 6, "stall-shared")
    relay.plan = [2 * MIB, 2 * MIB]
    out = {}

    def get(n):
        out[n] = raw_get(edge, f"/v2/images/{image_id}/file")

    threads = [threading.Thread(target=get, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for n in range(2):
        status, _, body, _ = out[n]
        assert status == 200 and md5(body) == md5(data), (n, len(body))
    assert len(relay.ranges) == 3, relay.ranges
    assert image_id in cached_ids(edge)


def test_stalled_for_good_cuts_the_body_and_a_later_request_refills(edge, central, relay):
    image_id, data = new_image(central, 8, "stall-forever")
    # Mid-body, then every resume answers its head and nothing more.
    relay.plan = [2 * MIB]
    relay.stall_every = 0
    status, hdrs, body, took = raw_get(edge, f"/v2/images/{image_id}/file")
    # The head arrived, then a body cut short: never a complete-looking one.
    assert status == 200 and int(hdrs["content-length"]) == len(data)
    assert len(body) < len(data), took
    assert body == data[: len(body)]
    print(f"stalled for good: {len(body)} of {len(data)} bytes, cut after {took:.2f} s")
    # A first try and two resumes, each ending after 1 s of silence, plus back-off.
    assert 2.5 <= took <= 12, took
    assert len(relay.ranges) == 3, relay.ranges
    assert all(r and r.startswith("bytes=") for r in relay.ranges[1:]), relay.ranges
    assert image_id not in cached_ids(edge)
    deadline = time.monotonic() + 5
    while incomplete_files(edge) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert incomplete_files(edge) == []
    assert metric(edge.metrics, "stackfed_cache_fill_resumes_total", outcome="failed") >= 1
    relay.reset()
    status, _, body, _ = raw_get(edge, f"/v2/images/{image_id}/file")
    assert status == 200 and md5(body) == md5(data)
    assert image_id in cached_ids(edge)


def test_a_central_that_ignores_range_is_restarted_and_the_prefix_discarded(edge, central, relay):
    image_id, data = new_image(central, 8, "no-range")
    relay.strip_range = True
    relay.plan = [3 * MIB]
    restarts = metric(edge.metrics, "stackfed_cache_fill_resumes_total", outcome="restarted")
    status, _, body, _ = raw_get(edge, f"/v2/images/{image_id}/file")
    assert status == 200 and len(body) == len(data) and md5(body) == md5(data)
    assert len(relay.ranges) == 2 and relay.ranges[1].startswith("bytes="), relay.ranges
    assert image_id in cached_ids(edge)
    assert metric(edge.metrics, "stackfed_cache_fill_resumes_total", outcome="restarted") == restarts + 1


def test_a_range_on_a_miss_is_right_when_the_central_ignores_range(edge, central, relay):
    """A client's Range on an uncached image is answered from the central: when the
    central sends the whole image instead, the edge still sends exactly the range."""
    image_id, data = new_image(central, 2, "no-range-pass")
    relay.strip_range = True
    relay.stall_every = None
    status, hdrs, body, _ = raw_get(edge, f"/v2/images/{image_id}/file",
                                    headers={"Range": "bytes=1000-1999"})
    assert status == 206, hdrs
    assert hdrs["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert body == data[1000:2000]

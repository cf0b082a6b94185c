"""Operability, with the real binaries: configurations refused at start with the key
named, the Prometheus endpoint scraped and parsed with prometheus_client's own parser,
the access log (JSON) correlated with the clusters' logs, health for load balancers
(drain file, readiness, hysteresis), and TLS to a real Swift cluster behind nginx with a
test CA."""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import swiftclient.client as swc
from prometheus_client.parser import text_string_to_metric_families

import peers

USER, KEY = "test:tester", "testing"

CLUSTER = '[[clusters]]\nid = "a"\nendpoint = "http://127.0.0.1:1"\ncapacity_bytes = 1000\n'

KEYSTONE_AUTH = ('auth = {{ kind = "keystone", auth_url = "http://127.0.0.1:1/v3", user = "stackfed", '
                 'project = "service", {} }}\n')

PROXY_REFUSED = [
    ('listen_adress = "127.0.0.1:1"\n' + CLUSTER, "listen_adress"),
    (CLUSTER + "weigth = 2\n", "weigth"),
    (CLUSTER + 'recon_endpoint = "http://127.0.0.1:6200"\n', "recon_endpoint"),
    (CLUSTER + "high_water_mark = 90\n", "high_water_mark"),
    (CLUSTER.replace("http://", "ftp://"), "ftp://"),
    ('response_timeout = "0s"\n' + CLUSTER, "response_timeout"),
    ("connect_timeout_seconds = 0\n" + CLUSTER, "connect_timeout"),
    ('connect_timeout = "soon"\n' + CLUSTER, "connect_timeout"),
    ('connect_timeout = "2s"\nconnect_timeout_seconds = 2\n' + CLUSTER, "connect_timeout"),
    ("probe_fall = 0\n" + CLUSTER, "probe_fall"),
    (CLUSTER + 'state = "offline"\n', "offline"),
    ('ca_file = "/nonexistent/ca.pem"\n' + CLUSTER, "/nonexistent/ca.pem"),
    # Keystone: secrets that cannot be read are refused by --check-config as at start.
    (KEYSTONE_AUTH.format('password = { file = "/nonexistent/ks-password" }') + CLUSTER,
     "/nonexistent/ks-password"),
    (KEYSTONE_AUTH.format('password = { env = "STACKFED_TEST_UNSET_PASSWORD" }') + CLUSTER,
     "STACKFED_TEST_UNSET_PASSWORD"),
    ('auth = { kind = "keystone", auth_url = "http://127.0.0.1:1/v3", application_credential_id = "x" }\n'
     + CLUSTER, "application_credential_secret"),
    (KEYSTONE_AUTH.format('password = "pw"').replace("http://", "ftp://") + CLUSTER, "auth.auth_url"),
]

EDGE = 'central_url = "http://127.0.0.1:1"\ncache_dir = "{d}"\n'

EDGE_KEYSTONE = (EDGE + 'identity = "keystone"\n[keystone]\nauth_url = "http://127.0.0.1:1/v3"\n'
                 'username = "stackfed-edge"\n')

EDGE_REFUSED = [
    (EDGE + "freshnes = 3\n", "freshnes"),
    (EDGE + "prefetch_concurrency = 0\n", "prefetch_concurrency"),
    (EDGE.replace("http://", "ftp://"), "ftp://"),
    (EDGE + 'max_stale = "1 fortnight"\n', "max_stale"),
    (EDGE + "response_timeout_seconds = 0\n", "response_timeout"),
    (EDGE + 'prefetch = [{ id = "9b2c1f4e-3a5d-4c6b-8e7f-0123456789ab", colour = "red" }]\n', "colour"),
    # Keystone: secrets that cannot be read are refused by --check-config as at start.
    (EDGE_KEYSTONE + 'password_file = "/nonexistent/edge-password"\n', "/nonexistent/edge-password"),
    (EDGE_KEYSTONE + 'password_env = "STACKFED_TEST_UNSET_PASSWORD"\n', "STACKFED_TEST_UNSET_PASSWORD"),
    (EDGE_KEYSTONE + 'password_file = "/dev/null"\n', "is empty"),
    (EDGE_KEYSTONE.replace('"http://127.0.0.1:1/v3"', '"ftp://127.0.0.1:1/v3"') + 'password = "pw"\n',
     "keystone.auth_url"),
]


@pytest.fixture(scope="module")
def bins():
    return {n: peers.cargo_bin(n) for n in ("swift-federation-proxy", "glance-edge-cache")}


def run(binary, conf: Path, *extra):
    return subprocess.run([str(binary), "--config", str(conf), *extra], capture_output=True,
                          text=True, timeout=60, cwd=conf.parent)


@pytest.mark.parametrize("text,key", PROXY_REFUSED)
def test_proxy_refuses_a_bad_configuration_naming_the_key(tmp_path, bins, text, key):
    conf = tmp_path / "proxy.toml"
    conf.write_text(text)
    for extra in ((), ("--check-config",)):
        r = run(bins["swift-federation-proxy"], conf, "--listen", "127.0.0.1:0", *extra)
        assert r.returncode == 1, (extra, r.stdout, r.stderr)
        assert key in r.stderr and "invalid configuration" in r.stderr, r.stderr
        assert "panicked" not in r.stderr
    assert not (tmp_path / "federation.db").exists(), "nothing opened before the check"


@pytest.mark.parametrize("text,key", EDGE_REFUSED)
def test_edge_refuses_a_bad_configuration_naming_the_key(tmp_path, bins, text, key):
    conf = tmp_path / "edge.toml"
    conf.write_text(text.replace("{d}", str(tmp_path / "cache")))
    for extra in ((), ("--check-config",)):
        r = run(bins["glance-edge-cache"], conf, "--listen", "127.0.0.1:0", *extra)
        assert r.returncode == 1, (extra, r.stdout, r.stderr)
        assert key in r.stderr and "invalid configuration" in r.stderr, r.stderr
    assert not (tmp_path / "cache").exists()


def test_check_config_accepts_durations_with_units_and_the_old_keys(tmp_path, bins):
    conf = tmp_path / "proxy.toml"
    conf.write_text('response_timeout = "1m 30s"\nconnect_timeout_seconds = 2.5\n'
                    'probe_interval = "500ms"\nlog_format = "json"\n'
                    'metrics_listen = "127.0.0.1:9100"\n' + CLUSTER.replace("http:", "https:"))
    r = run(bins["swift-federation-proxy"], conf, "--check-config")
    assert r.returncode == 0 and "is valid" in r.stdout, r.stderr
    assert not (tmp_path / "federation.db").exists(), "--check-config opens nothing"
    edge = tmp_path / "edge.toml"
    edge.write_text(EDGE.format(d=tmp_path / "cache") + 'freshness = "30s"\nmax_stale_seconds = 3600\n')
    r = run(bins["glance-edge-cache"], edge, "--check-config")
    assert r.returncode == 0 and "is valid" in r.stdout, r.stderr


# ----- the proxy: metrics, access log, health -------------------------------------------

def scrape(url):
    r = requests.get(url, timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def sample(families, metric, name, /, **labels):
    """The value of the one sample `name` of `metric` with these labels (None if absent)."""
    f = families.get(metric)
    if f is None:
        return None
    for s in f.samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def access_line(log: Path, request_id: str):
    """The JSON access log line of a request, by its id (None while not written)."""
    for raw in log.read_text(errors="replace").splitlines():
        if request_id in raw and raw.startswith("{"):
            doc = json.loads(raw)
            if doc.get("target") == "access":
                return doc
    return None


def wait_for(pred, timeout=60.0, what=""):
    """Polls until `pred()` gives something; the deadline is generous (a loaded 2-core CI
    machine), a condition that holds returns at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def ops_proxy(workdir, clusters, bins):
    """A proxy over east, west and a cluster nobody listens for, with metrics on an
    admin listener, JSON logs, a drain file and fast probes."""
    dead = peers.free_port()
    metrics = peers.free_port()
    base = workdir / "ops-proxy"
    p = peers.FederationProxy(
        base, [clusters["east"], clusters["west"]], store="memory",
        extra_toml=(f'metrics_listen = "127.0.0.1:{metrics}"\nlog_format = "json"\n'
                    f'disable_path = "{base / "disabled"}"\nprobe_interval = "200ms"\n'
                    "probe_fall = 2\nprobe_rise = 1\n"),
        extra_clusters=(f'[[clusters]]\nid = "gone"\nendpoint = "http://127.0.0.1:{dead}"\n'
                        "capacity_bytes = 1_000_000_000_000\n"),
    )
    p.start(bins["swift-federation-proxy"])
    p.metrics = f"http://127.0.0.1:{metrics}"
    try:
        # Until the dead cluster is marked offline, logins (which go to every cluster)
        # fail; after probe_fall failed probes it is, and the metrics say so.
        wait_for(lambda: sample(scrape(p.metrics + "/metrics"), "stackfed_swift_cluster_up",
                                "stackfed_swift_cluster_up", cluster="gone") == 0,
                 what="the dead cluster marked offline")
        yield p
    finally:
        p.stop()


def test_metrics_are_scraped_and_parsed_by_prometheus_client(ops_proxy):
    m = ops_proxy.metrics
    c = swc.Connection(authurl=ops_proxy.auth_url, user=USER, key=KEY, retries=0)
    c.put_container("ops-metrics", headers={"X-Container-Attr-Cluster": "east"})
    c.put_object("ops-metrics", "o", b"x" * 1000)
    for _ in range(3):
        assert c.get_object("ops-metrics", "o")[1] == b"x" * 1000
    fams = scrape(m + "/metrics")
    got = sample(fams, "stackfed_http_requests", "stackfed_http_requests_total",
                 service="swift", method="GET", family="object", status="200")
    assert got is not None and got >= 3, fams.get("stackfed_http_requests")
    assert sample(fams, "stackfed_http_requests", "stackfed_http_requests_total",
                  service="swift", method="PUT", family="container", status="201") >= 1
    count = sample(fams, "stackfed_http_request_duration_seconds",
                   "stackfed_http_request_duration_seconds_count",
                   service="swift", method="GET", family="object")
    inf = sample(fams, "stackfed_http_request_duration_seconds",
                 "stackfed_http_request_duration_seconds_bucket",
                 service="swift", method="GET", family="object", le="+Inf")
    assert count >= 3 and inf == count
    assert sample(fams, "stackfed_http_response_bytes", "stackfed_http_response_bytes_total",
                  service="swift", family="object") >= 3000
    assert sample(fams, "stackfed_swift_cluster_up", "stackfed_swift_cluster_up", cluster="east") == 1
    assert sample(fams, "stackfed_swift_cluster_up", "stackfed_swift_cluster_up", cluster="west") == 1
    assert sample(fams, "stackfed_swift_cluster_probe_failures",
                  "stackfed_swift_cluster_probe_failures_total", cluster="gone") >= 2
    assert sample(fams, "stackfed_locator_lookups", "stackfed_locator_lookups_total", result="hit") >= 1
    assert sample(fams, "stackfed_store_get_seconds", "stackfed_store_get_seconds_count") >= 1
    assert sample(fams, "stackfed_swift_ready", "stackfed_swift_ready") == 1
    # Not on the Swift listener: there /metrics is a Swift path like any other.
    r = requests.get(ops_proxy.endpoint + "/metrics")
    assert r.status_code == 412 and "stackfed_" not in r.text
    assert requests.get(m + "/livez").status_code == 200
    assert requests.get(m + "/readyz").text == "OK"


def test_access_log_lines_are_json_with_the_trans_id(ops_proxy):
    c = swc.Connection(authurl=ops_proxy.auth_url, user=USER, key=KEY, retries=0)
    c.put_container("ops-log", headers={"X-Container-Attr-Cluster": "east"})
    c.put_object("ops-log", "o", b"y" * 777)
    url, token = c.get_auth()
    r = requests.get(f"{url}/ops-log/o", headers={"X-Auth-Token": token})
    assert r.status_code == 200
    tx = r.headers["X-Trans-Id"]
    assert re.fullmatch(r"tx[0-9a-f]{21}-[0-9a-f]{10}", tx), tx

    doc = wait_for(lambda: access_line(ops_proxy.base / "proxy.log", tx), what="the access log line")
    assert doc["method"] == "GET" and doc["status"] == 200 and doc["bytes"] == 777, doc
    assert doc["path"].endswith("/ops-log/o") and doc["client"].startswith("127.0.0.1:"), doc
    assert doc["duration_ms"] >= 0 and doc["complete"] is True
    # (That each request to a cluster carries the id as X-Trans-Id-Extra, so the
    # cluster's own transaction id ends with it, is checked on the wire by
    # swift-proto/tests/service.rs; the test clusters log at WARNING only.)


def test_healthcheck_drains_by_file_and_answers_at_once(ops_proxy):
    flag = ops_proxy.base / "disabled"
    r = requests.get(ops_proxy.endpoint + "/healthcheck")
    assert (r.status_code, r.text) == (200, "OK")
    flag.write_text("")
    try:
        r = requests.get(ops_proxy.endpoint + "/healthcheck")
        assert (r.status_code, r.text) == (503, "DISABLED BY FILE")
        assert requests.get(ops_proxy.metrics + "/readyz").status_code == 503
        assert requests.get(ops_proxy.metrics + "/livez").status_code == 200
    finally:
        flag.unlink()
    assert requests.get(ops_proxy.endpoint + "/healthcheck").status_code == 200


def test_text_logs_in_a_file_have_no_terminal_colours(workdir, bins):
    """Logs written to a file or journald (not a terminal) are plain text: an operator's
    `grep 'status=503'` finds the access line (colour escapes split `status` from `=`)."""
    for name in ("swift-federation-proxy", "glance-edge-cache"):
        base = workdir / f"ops-plain-log-{name}"
        base.mkdir(parents=True, exist_ok=True)
        port = peers.free_port()
        conf = base / "server.toml"
        if name == "swift-federation-proxy":
            text = ('store = { kind = "memory" }\n'
                    + CLUSTER.replace(":1", f":{peers.free_port()}"))
        else:
            text = (f'central_url = "http://127.0.0.1:{peers.free_port()}"\n'
                    f'cache_dir = "{base / "cache"}"\n')
        conf.write_text(f'listen = "127.0.0.1:{port}"\n' + text)
        proc = peers.spawn(name, [str(bins[name]), "--config", str(conf)], base / "server.log")
        try:
            peers.wait_http(f"http://127.0.0.1:{port}/healthcheck", timeout=30, ok=(200, 503))
            deadline = time.monotonic() + 10
            while "/healthcheck" not in (base / "server.log").read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            proc.stop()
        log = (base / "server.log").read_text()
        assert "\x1b[" not in log, log[:600]
        assert re.search(r"path=/healthcheck status=(200|503)", log), log[:600]


def test_not_ready_without_an_online_cluster(workdir, bins):
    base = workdir / "ops-unready"
    base.mkdir(parents=True, exist_ok=True)
    port, metrics = peers.free_port(), peers.free_port()
    conf = base / "proxy.toml"
    conf.write_text(f'store = {{ kind = "memory" }}\nprobe_interval = "200ms"\n'
                    f'metrics_listen = "127.0.0.1:{metrics}"\n'
                    + CLUSTER.replace(":1", f":{peers.free_port()}"))
    proc = peers.spawn("unready-proxy", [str(bins["swift-federation-proxy"]), "--config", str(conf),
                                         "--listen", f"127.0.0.1:{port}"], base / "proxy.log")
    try:
        peers.wait_http(f"http://127.0.0.1:{metrics}/livez", timeout=30)
        # Offline only after probe_fall (2) failed probes, 200 ms apart: when the first
        # 503 is seen, the failure counter (counted before the state changes) says 2 or
        # more. (Timing it from /livez was flaky: on a loaded machine both probes could
        # fail before /livez was first answered.)
        peers.wait_http(f"http://127.0.0.1:{port}/healthcheck", timeout=60, ok=(503,))
        failures = sample(scrape(f"http://127.0.0.1:{metrics}/metrics"),
                          "stackfed_swift_cluster_probe_failures",
                          "stackfed_swift_cluster_probe_failures_total", cluster="a")
        assert failures is not None and failures >= 2, failures
        r = requests.get(f"http://127.0.0.1:{port}/healthcheck")
        assert r.status_code == 503 and "no cluster online" in r.text
    finally:
        proc.stop()


# ----- TLS to a real cluster behind nginx ---------------------------------------------

NGINX = """user root; daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{ access_log off;
  client_body_temp_path {d}/nb; proxy_temp_path {d}/np; fastcgi_temp_path {d}/nf;
  uwsgi_temp_path {d}/nu; scgi_temp_path {d}/ns;
  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {d}/server.pem;
    ssl_certificate_key {d}/server.key; client_max_body_size 0;
    location / {{ proxy_pass http://127.0.0.1:{upstream}; proxy_http_version 1.1;
      proxy_set_header Host $http_host; proxy_request_buffering off; proxy_buffering off; }} }}
}}
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def tls_front(d: Path, upstream: int):
    """nginx terminating TLS, with a certificate of a fresh test CA for 127.0.0.1, in
    front of a server on loopback port `upstream`. Returns (process, endpoint, CA file)."""
    if not shutil.which("nginx") or not shutil.which("openssl"):
        pytest.fail("nginx and openssl are needed (scripts/peers-setup installs them)")
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=stackfed test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                               "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    port = peers.free_port()
    (d / "nginx.conf").write_text(NGINX.format(d=d, port=port, upstream=upstream))
    proc = peers.spawn("nginx", [shutil.which("nginx"), "-c", str(d / "nginx.conf")], d / "nginx.log")
    endpoint = f"https://127.0.0.1:{port}"

    def up():
        try:
            requests.get(endpoint + "/", verify=str(d / "ca.pem"), timeout=2)
            return True
        except requests.RequestException:
            return False
    try:
        wait_for(up, 15, "nginx with TLS")
    except BaseException:
        proc.stop()
        raise
    return proc, endpoint, d / "ca.pem"


@pytest.fixture(scope="module")
def tls_east(workdir, clusters):
    """nginx terminating TLS in front of cluster east."""
    proc, endpoint, ca = tls_front(workdir / "tls", int(clusters["east"].endpoint.rsplit(":", 1)[1]))
    try:
        r = requests.get(endpoint + "/healthcheck", verify=str(ca), timeout=5)
        assert r.status_code == 200, r.text
        yield {"endpoint": endpoint, "ca": ca}
    finally:
        proc.stop()


def tls_proxy_conf(base: Path, endpoint: str, ca: Path | None) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    conf = base / "proxy.toml"
    conf.write_text('auth = "tempauth"\nstore = { kind = "memory" }\nprobe_interval = "200ms"\n'
                    + (f'ca_file = "{ca}"\n' if ca else "")
                    + f'[[clusters]]\nid = "secure"\nendpoint = "{endpoint}"\n'
                    "capacity_bytes = 1_000_000_000_000\n")
    return conf


def test_tls_to_a_cluster_with_a_test_ca(workdir, bins, tls_east):
    base = workdir / "tls-proxy"
    conf = tls_proxy_conf(base, tls_east["endpoint"], tls_east["ca"])
    port = peers.free_port()
    proc = peers.spawn("tls-proxy", [str(bins["swift-federation-proxy"]), "--config", str(conf),
                                     "--listen", f"127.0.0.1:{port}"], base / "proxy.log")
    try:
        peers.wait_http(f"http://127.0.0.1:{port}/healthcheck", timeout=30)
        c = swc.Connection(authurl=f"http://127.0.0.1:{port}/auth/v1.0", user=USER, key=KEY, retries=0)
        c.put_container("ops-tls")
        body = b"over TLS " * 1000
        c.put_object("ops-tls", "o", body)
        assert c.get_object("ops-tls", "o")[1] == body
        names = [x["name"] for x in c.get_container("ops-tls")[1]]
        assert names == ["o"]
        c.delete_object("ops-tls", "o")
        c.delete_container("ops-tls")
    finally:
        proc.stop()
        if proc.popen.returncode not in (0, None):
            print((base / "proxy.log").read_text()[-4000:])


def test_tls_rejects_a_certificate_of_an_unknown_ca(workdir, bins, tls_east):
    base = workdir / "tls-proxy-untrusted"
    conf = tls_proxy_conf(base, tls_east["endpoint"], None)
    port = peers.free_port()
    proc = peers.spawn("tls-proxy", [str(bins["swift-federation-proxy"]), "--config", str(conf),
                                     "--listen", f"127.0.0.1:{port}"], base / "proxy.log")
    try:
        # The only cluster fails every probe (its certificate is not trusted): not ready.
        peers.wait_http(f"http://127.0.0.1:{port}/healthcheck", timeout=30, ok=(503,))
        r = requests.get(f"http://127.0.0.1:{port}/auth/v1.0",
                         headers={"X-Auth-User": USER, "X-Auth-Key": KEY})
        assert r.status_code >= 500, r.text
    finally:
        proc.stop()


# ----- the edge: metrics, request ids, health without asking the central -----------------

@pytest.fixture(scope="module")
def ops_edge(workdir, bins):
    central = peers.GlanceCentral(workdir / "ops-glance-central")
    central.start()
    metrics = peers.free_port()
    e = peers.GlanceEdge(workdir / "ops-glance-edge", central.endpoint,
                         extra_toml=(f'metrics_listen = "127.0.0.1:{metrics}"\nlog_format = "json"\n'
                                     'probe_interval = "300ms"\n'
                                     f'disable_path = "{workdir / "ops-glance-edge" / "disabled"}"\n'))
    try:
        e.start(bins["glance-edge-cache"])
        e.metrics = f"http://127.0.0.1:{metrics}"
        e.central = central
        yield e
    finally:
        e.stop()
        central.stop()


def test_edge_metrics_request_ids_and_health_while_the_central_is_down(ops_edge):
    e, central = ops_edge, ops_edge.central
    r = requests.post(central.endpoint + "/v2/images",
                      json={"name": "ops", "disk_format": "raw", "container_format": "bare",
                            "visibility": "public"})
    assert r.status_code == 201, r.text
    image = r.json()["id"]
    data = bytes(range(256)) * 4096
    r = requests.put(f"{central.endpoint}/v2/images/{image}/file", data=data,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    for _ in range(3):  # a fill, then hits
        r = requests.get(f"{e.endpoint}/v2/images/{image}/file")
        assert r.status_code == 200 and r.content == data
    rid = r.headers["x-openstack-request-id"]
    assert re.fullmatch(r"req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", rid), rid

    def hits():
        fams = scrape(e.metrics + "/metrics")
        cached = sample(fams, "stackfed_cache_bytes_served", "stackfed_cache_bytes_served_total", source="cache")
        return fams if cached is not None and cached >= 2 * len(data) else None
    fams = wait_for(hits, what="bytes served from the cache")
    assert sample(fams, "stackfed_cache_data_requests", "stackfed_cache_data_requests_total", source="cache") >= 2
    assert sample(fams, "stackfed_cache_data_requests", "stackfed_cache_data_requests_total", source="fill") == 1
    assert sample(fams, "stackfed_cache_fills_started", "stackfed_cache_fills_started_total") == 1
    assert sample(fams, "stackfed_cache_fills_in_flight", "stackfed_cache_fills_in_flight") == 0
    assert sample(fams, "stackfed_http_requests", "stackfed_http_requests_total", service="glance",
                  method="GET", family="image-data", status="200") >= 3
    assert sample(fams, "stackfed_glance_central_up", "stackfed_glance_central_up") == 1
    assert wait_for(lambda: sample(scrape(e.metrics + "/metrics"), "stackfed_cache_used_bytes",
                                   "stackfed_cache_used_bytes") == len(data), what="cache size gauge")

    # The access log line of the last download, by its request id.
    doc = wait_for(lambda: access_line(e.base / "edge.log", rid), what="the edge's access log line")
    assert (doc["method"], doc["status"], doc["bytes"]) == ("GET", 200, len(data)), doc
    # A client's own id in Glance's form is kept.
    mine = "req-0123abcd-0000-4000-8000-00000000beef"
    r = requests.get(e.endpoint + "/versions", headers={"X-Openstack-Request-Id": mine})
    assert r.headers["x-openstack-request-id"] == mine

    central.stop()
    # Health is answered at once from what the edge knows, and stays 200: serving
    # offline is the edge's job. "At once": under the edge's 1 s connect timeout to the
    # central (a few ms when quiet; 0.5 s was tight on a loaded 2-core machine).
    wait_for(lambda: requests.get(e.endpoint + "/healthcheck").json()["central"]["reachable"] is False,
             what="the probe to notice the central is down")
    for _ in range(5):
        t = time.monotonic()
        r = requests.get(e.endpoint + "/healthcheck", timeout=5)
        assert r.status_code == 200 and time.monotonic() - t < 1.0
        assert re.fullmatch(r"req-[0-9a-f-]{36}", r.headers["x-openstack-request-id"])
    assert requests.get(e.metrics + "/readyz").status_code == 200
    assert sample(scrape(e.metrics + "/metrics"), "stackfed_glance_central_up", "stackfed_glance_central_up") == 0
    # The edge's own refusal carries an id too.
    r = requests.post(e.endpoint + "/v2/images", json={"name": "x"})
    assert r.status_code == 503 and r.headers["x-openstack-request-id"].startswith("req-")
    r = requests.get(f"{e.endpoint}/v2/images/{image}/file")
    assert r.status_code == 200 and r.content == data
    flag = e.base / "disabled"
    flag.write_text("")
    try:
        r = requests.get(e.endpoint + "/healthcheck")
        assert (r.status_code, r.text) == (503, "DISABLED BY FILE")
    finally:
        flag.unlink()
    assert requests.get(e.endpoint + "/healthcheck").status_code == 200


def test_edge_reaches_an_https_central_with_a_test_ca(workdir, bins, ops_edge):
    central = ops_edge.central
    central.start()  # the test above stopped it
    proc, endpoint, ca = tls_front(workdir / "tls-glance", central.port)
    e = peers.GlanceEdge(workdir / "tls-edge", endpoint, extra_toml=f'ca_file = "{ca}"\n')
    try:
        e.start(bins["glance-edge-cache"])
        r = requests.get(e.endpoint + "/v2/images")
        assert r.status_code == 200 and "x-edge-stale" not in r.headers, r.text
        assert any(i["name"] == "ops" for i in r.json()["images"])
        assert requests.get(e.endpoint + "/healthcheck").json()["central"]["reachable"] is True
    finally:
        e.stop()
    # Without the CA the central's certificate is refused: only stale answers (none
    # cached in this fresh edge) and an unreachable central.
    e = peers.GlanceEdge(workdir / "tls-edge-untrusted", endpoint)
    try:
        e.start(bins["glance-edge-cache"])
        r = requests.get(e.endpoint + "/v2/images")
        assert r.status_code in (503, 504) or r.headers.get("x-edge-stale") == "true", \
            (r.status_code, r.headers, r.text)
        assert requests.get(e.endpoint + "/healthcheck").json()["central"]["reachable"] is False
    finally:
        e.stop()
        proc.stop()


def test_scripts_find_the_binaries_under_cargo_target_dir(monkeypatch, tmp_path):
    """scripts/run (devstack.py), the load and profile scripts and this suite start the
    binaries where cargo put them: under $CARGO_TARGET_DIR when set (a relative one from
    the workspace root, where the scripts run cargo), else target/."""
    name = "swift-federation-proxy"
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)
    assert peers.built(name) == peers.ROOT / "target" / "debug" / name
    monkeypatch.setenv("CARGO_TARGET_DIR", str(tmp_path))
    assert peers.built(name) == tmp_path / "debug" / name
    assert peers.built(name, "release") == tmp_path / "release" / name
    monkeypatch.setenv("CARGO_TARGET_DIR", "elsewhere")
    assert peers.built(name) == peers.ROOT / "elsewhere" / "debug" / name
    # No script builds a binary's path by itself.
    for script in ("devstack.py", "load_swift.py", "load_glance.py", "profile_swift.py",
                   "listing_breakdown.py"):
        text = (peers.ROOT / "scripts" / script).read_text()
        assert '"target" / "debug"' not in text and '"target" / "release"' not in text, script
        assert "peers.built(" in text, script


def test_the_readmes_migration_line_is_what_scripts_run_migration_uses(tmp_path, bins):
    """The README's line that enables live migration is devstack's (`./scripts/run
    --migration`), and the proxy accepts it."""
    sys.path.insert(0, str(peers.ROOT / "scripts"))
    import devstack
    readme = (peers.ROOT / "README.md").read_text()
    assert f"```toml\n{devstack.MIGRATION_TOML}```" in readme
    conf = tmp_path / "proxy.toml"
    conf.write_text(devstack.MIGRATION_TOML + CLUSTER)
    r = run(bins["swift-federation-proxy"], conf, "--check-config")
    assert r.returncode == 0 and "is valid" in r.stdout, r.stderr

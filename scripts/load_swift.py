"""See scripts/load-swift. Every load runs against 127.0.0.1 only and is bounded."""

import argparse
import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))
import peers  # noqa: E402


def wrk(url, token, seconds, method="GET", connections=16):
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(f'wrk.method = "{method}"\nwrk.headers["X-Auth-Token"] = "{token}"\n')
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
                             capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    finally:
        script.unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, int(errors.group(1)) if errors else 0


def ab_head(url, token, seconds, connections=16):
    """HEAD req/s with ApacheBench (wrk cannot: it waits for a body HEAD never has)."""
    out = subprocess.run(["ab", "-i", "-k", "-q", "-t", str(seconds), "-n", "1000000", "-c", str(connections),
                          "-H", f"X-Auth-Token: {token}", url],
                         capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    return rps, failed + (int(non2xx.group(1)) if non2xx else 0)


NGINX_HEAD = """user root; daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off;
  client_body_temp_path {d}/nb; proxy_temp_path {d}/np; fastcgi_temp_path {d}/nf;
  uwsgi_temp_path {d}/nu; scgi_temp_path {d}/ns;
"""


def start_nginx(d: Path, servers: str) -> peers.Proc:
    d.mkdir(parents=True, exist_ok=True)
    (d / "nginx.conf").write_text(NGINX_HEAD.format(d=d) + servers + "}\n")
    return peers.spawn("nginx", [shutil.which("nginx"), "-c", str(d / "nginx.conf")], d / "nginx.log")


def nginx_reverse_proxy(d: Path, upstream_port: int, access_log: bool = False) -> tuple[peers.Proc, int]:
    """nginx as a keep-alive reverse proxy in front of one backend; with `access_log`,
    it writes a line per request to a file (its default `combined` format), as the
    federation proxy always does."""
    port = peers.free_port()
    log = f"access_log {d}/access.log;" if access_log else ""
    return start_nginx(d, f"""
  upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 32; }}
  server {{ listen 127.0.0.1:{port}; {log}
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
"""), port


def fast_backend(d: Path) -> tuple[peers.Proc, int]:
    """A fake Swift cluster that answers from nginx's static file server: tempauth
    login, /healthcheck, a container HEAD and object GET/HEAD. Far faster than real
    Swift, so what the federation proxy itself costs shows in the ratios."""
    port = peers.free_port()
    obj = d / "files" / "v1" / "AUTH_test" / "bench" / "small"
    obj.parent.mkdir(parents=True)
    obj.write_bytes(b"x" * 1024)
    return start_nginx(d, f"""
  server {{ listen 127.0.0.1:{port};
    location = /auth/v1.0 {{ add_header X-Auth-Token AUTH_tkfast; add_header X-Auth-Token-Expires 86400;
      add_header X-Storage-Url http://127.0.0.1:{port}/v1/AUTH_test; return 200; }}
    location = /healthcheck {{ return 200 "OK"; }}
    location = /v1/AUTH_test/bench {{ return 204; }}
    location /v1/ {{ root {d / "files"}; }} }}
"""), port


def spread(values):
    """Median and range of a list of figures, as text."""
    v = sorted(values)
    return f"{statistics.median(v):.2f} ({v[0]:.2f}–{v[-1]:.2f})"


def compare(r, prefix, targets, seconds, rounds):
    """GET (wrk) and HEAD (ab) req/s of one small object through each target, the
    targets interleaved (A, B, C, A, B, C, ...) so that the machine's load falls on all
    sides of a ratio alike."""
    for method in ("GET", "HEAD"):
        for _ in range(rounds):
            for who, url, tok in targets:
                measure = wrk if method == "GET" else (lambda u, t, s, _m: ab_head(u, t, s))
                rps, errors = measure(f"{url}/bench/small", tok, seconds, method)
                assert errors == 0, (prefix, who, method, errors)
                r.setdefault(f"{prefix}{method.lower()}_rps_{who}", []).append(rps)


def table(r, prefix, title):
    print(f"\n{title:34} {'direct':>9} {'nginx':>9} {'proxy':>9} {'proxy/direct':>20} {'proxy/nginx':>20}")
    for m in ("get", "head"):
        d, n, p = (r[f"{prefix}{m}_rps_{w}"] for w in ("direct", "nginx", "proxy"))
        print(f"{m.upper() + ' req/s (median)':34} {statistics.median(d):9.0f} {statistics.median(n):9.0f} "
              f"{statistics.median(p):9.0f} {spread([b / a for a, b in zip(d, p)]):>20} "
              f"{spread([b / a for a, b in zip(n, p)]):>20}")


def curl_transfer(args):
    """Runs curl, returns (seconds, HTTP status) from its -w output."""
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{time_total} %{http_code}", *args],
                         capture_output=True, text=True, check=True, timeout=600).stdout.split()
    return float(out[0]), int(out[1])


def large_objects(r, sides, mib, rounds, base):
    """PUT then GET of one `mib` MiB object through each side, interleaved; MB/s."""
    src = base / "large.bin"
    with open(src, "wb") as f:
        f.truncate(mib << 20)  # sparse: reading it costs curl no disk
    for _ in range(rounds):
        for who, url, tok in sides:
            secs, status = curl_transfer(["-T", str(src), "-H", f"X-Auth-Token: {tok}", f"{url}/bench/large"])
            assert status == 201, (who, status)
            r.setdefault(f"large_put_mbps_{who}", []).append((mib << 20) / secs / 1e6)
        for who, url, tok in sides:
            secs, status = curl_transfer(["-H", f"X-Auth-Token: {tok}", f"{url}/bench/large"])
            assert status == 200, (who, status)
            r.setdefault(f"large_get_mbps_{who}", []).append((mib << 20) / secs / 1e6)
    src.unlink()


def listing_latency(r, sides, requests_each):
    """Account listing (JSON) latency: one keep-alive connection per side, the sides'
    requests interleaved one by one; p50 and p95 in ms."""
    conns = []
    for who, url, tok in sides:
        u = urlsplit(url)
        conns.append((who, http.client.HTTPConnection(u.hostname, u.port, timeout=30), f"{u.path}?format=json", tok))
    try:
        for i in range(requests_each + 5):
            for who, c, path, tok in conns:
                t = time.perf_counter()
                c.request("GET", path, headers={"X-Auth-Token": tok})
                resp = c.getresponse()
                body = resp.read()
                ms = (time.perf_counter() - t) * 1000
                assert resp.status == 200, (who, resp.status)
                if i >= 5:  # the first few warm up connections and caches
                    r.setdefault(f"listing_ms_{who}", []).append(ms)
                    r[f"listing_entries_{who}"] = len(json.loads(body))
    finally:
        for _, c, _, _ in conns:
            c.close()


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


def upload_rss(r, binary, base, uploads, mib):
    """The proxy's peak RSS (VmHWM) while `uploads` clients each PUT `mib` MiB through
    it at once, in front of a backend that discards the data."""
    port = peers.free_port()
    backend = peers.spawn("discard", [sys.executable, str(ROOT / "scripts" / "discard_backend.py"), str(port)],
                          base / "discard.log")
    proxy = None
    try:
        peers.wait_http(f"http://127.0.0.1:{port}/healthcheck", timeout=10)
        proxy = peers.FederationProxy(base / "proxy-discard",
                                      [SimpleNamespace(name="discard", endpoint=f"http://127.0.0.1:{port}")])
        proxy.start(binary)
        h = requests.get(proxy.auth_url, headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"}).headers
        url, tok = h["X-Storage-Url"], h["X-Auth-Token"]
        requests.put(f"{url}/bench", headers={"X-Auth-Token": tok}).raise_for_status()

        def hwm():
            for line in Path(f"/proc/{proxy.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
            raise ValueError("no VmHWM")

        src = base / "upload.bin"
        with open(src, "wb") as f:
            f.truncate(mib << 20)
        r["rss_before_mib"] = hwm()
        started = time.monotonic()
        clients = [subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(src),
                                     "-H", f"X-Auth-Token: {tok}", f"{url}/bench/up{i}"],
                                    stdout=subprocess.PIPE, text=True) for i in range(uploads)]
        try:
            codes = [c.communicate(timeout=900)[0] for c in clients]
        finally:
            for c in clients:
                if c.poll() is None:
                    c.kill()
                    c.wait()
        r["rss_seconds"] = time.monotonic() - started
        # Reported, not asserted: the peak is what this row measures (see the README
        # for uploads that outlast the client's response timeout).
        r["rss_statuses"] = {c: codes.count(c) for c in sorted(set(codes))}
        r["rss_peak_mib"] = hwm()
        r["rss_uploads"], r["rss_upload_mib"] = uploads, mib
        src.unlink()
    finally:
        if proxy:
            proxy.stop()
        backend.stop()


SECTIONS = ("small", "listing", "large", "fast", "rss")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per wall-clock ratio")
    ap.add_argument("--containers", type=int, default=100, help="containers per cluster for the listing")
    ap.add_argument("--listings", type=int, default=200, help="listings per side for the latency percentiles")
    ap.add_argument("--large-mib", type=int, default=1024, help="size of the large object")
    ap.add_argument("--uploads", type=int, default=64, help="concurrent uploads for the RSS row")
    ap.add_argument("--upload-mib", type=int, default=1024, help="size of each upload for the RSS row")
    ap.add_argument("--nginx-access-log", action="store_true",
                    help="the nginx reverse proxy logs each request to a file, as the proxy does")
    ap.add_argument("--binary", default=str(peers.built("swift-federation-proxy", "release")))
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    args = ap.parse_args()
    only = set(args.only.split(","))
    assert only <= set(SECTIONS), only
    binary = Path(args.binary)
    base = Path(tempfile.mkdtemp(prefix="stackfed-load-swift-"))
    clusters, proxy, nginx = [], None, None
    fast = fast_proxy = fnginx = None
    r = {"rounds": args.rounds, "seconds": args.seconds}
    login = {"X-Auth-User": "test:tester", "X-Auth-Key": "testing"}
    try:
        if only & {"small", "listing", "large"}:
            clusters = peers.start_clusters(base / "swift", ["east", "west"])
            east, west = clusters
            proxy = peers.FederationProxy(base / "proxy", clusters)
            proxy.start(binary)
            purl, ptoken = (lambda h: (h["X-Storage-Url"], h["X-Auth-Token"]))(
                requests.get(proxy.auth_url, headers=login).headers)
            eurl, etoken = east.authenticate("test:tester", "testing")
            wurl, wtoken = west.authenticate("test:tester", "testing")
            ph, eh = {"X-Auth-Token": ptoken}, {"X-Auth-Token": etoken}
            requests.put(f"{purl}/bench", headers={**ph, "X-Container-Attr-Cluster": "east"}).raise_for_status()
            requests.put(f"{purl}/bench/small", headers=ph, data=b"x" * 1024).raise_for_status()

        if "small" in only:
            nginx, nport = nginx_reverse_proxy(base / "nginx", east.ports["proxy"], args.nginx_access_log)
            nurl = eurl.replace(f":{east.ports['proxy']}", f":{nport}")
            peers.wait_http(f"{nurl}/bench/small", timeout=10, headers=eh)
            compare(r, "", (("direct", eurl, etoken), ("nginx", nurl, etoken), ("proxy", purl, ptoken)),
                    args.seconds, args.rounds)
            nginx.stop()

        if "large" in only:
            print(f"{args.large_mib} MiB object PUT and GET, {args.rounds} rounds", flush=True)
            large_objects(r, (("direct", eurl, etoken), ("proxy", purl, ptoken)), args.large_mib, args.rounds, base)
            requests.delete(f"{purl}/bench/large", headers=ph)

        if "listing" in only:
            print(f"creating {args.containers} containers on each cluster", flush=True)
            for i in range(args.containers):
                for c in ("east", "west"):
                    requests.put(f"{purl}/list-{c}-{i:04d}",
                                 headers={**ph, "X-Container-Attr-Cluster": c}).raise_for_status()
            listing_latency(r, (("proxy", purl, ptoken), ("east", eurl, etoken), ("west", wurl, wtoken)),
                            args.listings)

        # The rest runs over fast fake backends, with the real clusters stopped so that
        # their daemons do not take CPU from them.
        if proxy:
            proxy.stop()
        for c in clusters:
            c.stop()

        if "fast" in only:
            fast, fport = fast_backend(base / "fast")
            furl = f"http://127.0.0.1:{fport}/v1/AUTH_test"
            peers.wait_http(f"{furl}/bench/small", timeout=10)
            fast_proxy = peers.FederationProxy(base / "proxy-fast",
                                               [SimpleNamespace(name="fast", endpoint=f"http://127.0.0.1:{fport}")])
            fast_proxy.start(binary)
            fpurl, fptoken = (lambda h: (h["X-Storage-Url"], h["X-Auth-Token"]))(
                requests.get(fast_proxy.auth_url, headers=login).headers)
            fnginx, fnport = nginx_reverse_proxy(base / "fast-nginx", fport, args.nginx_access_log)
            fnurl = f"http://127.0.0.1:{fnport}/v1/AUTH_test"
            peers.wait_http(f"{fnurl}/bench/small", timeout=10)
            assert requests.get(f"{fpurl}/bench/small", headers={"X-Auth-Token": fptoken}).content == b"x" * 1024
            compare(r, "fast_", (("direct", furl, "x"), ("nginx", fnurl, "x"), ("proxy", fpurl, fptoken)),
                    args.seconds, args.rounds)
            for p in (fnginx, fast_proxy, fast):
                p.stop()

        if "rss" in only:
            print(f"{args.uploads} concurrent uploads of {args.upload_mib} MiB through the proxy", flush=True)
            upload_rss(r, binary, base, args.uploads, args.upload_mib)
    finally:
        partial = ROOT / ".run" / "load-swift.partial.json"
        partial.parent.mkdir(exist_ok=True)
        partial.write_text(json.dumps(r, indent=2))
        for p in (fnginx, fast_proxy, fast, nginx, proxy):
            if p:
                p.stop()
        for c in clusters:
            c.stop()
        shutil.rmtree(base, ignore_errors=True)

    print(f"\n(medians of {args.rounds} interleaved rounds; ratios: median (min–max) of the per-round ratios)")
    if "small" in only:
        table(r, "", "1 KiB object, real Swift")
    if "fast" in only:
        table(r, "fast_", "1 KiB object, fast fake backend")
    if "large" in only:
        for m in ("put", "get"):
            d, p = r[f"large_{m}_mbps_direct"], r[f"large_{m}_mbps_proxy"]
            print(f"{args.large_mib} MiB object {m.upper()}, MB/s: direct {statistics.median(d):.0f}, "
                  f"proxy {statistics.median(p):.0f}, proxy/direct {spread([b / a for a, b in zip(d, p)])}")
    if "listing" in only:
        p50 = {w: statistics.median(r[f"listing_ms_{w}"]) for w in ("proxy", "east", "west")}
        slower = max(p50["east"], p50["west"])
        print(f"account listing (json), ms p50 / p95: proxy merging {r['listing_entries_proxy']} containers "
              f"{p50['proxy']:.1f} / {pct(r['listing_ms_proxy'], 0.95):.1f}; east's {r['listing_entries_east']} "
              f"{p50['east']:.1f} / {pct(r['listing_ms_east'], 0.95):.1f}; west's {r['listing_entries_west']} "
              f"{p50['west']:.1f} / {pct(r['listing_ms_west'], 0.95):.1f}; proxy p50 / slower cluster's p50 "
              f"{p50['proxy'] / slower:.2f}")
    if "rss" in only:
        print(f"proxy peak RSS (VmHWM): {r['rss_before_mib']:.1f} MiB before, {r['rss_peak_mib']:.1f} MiB after "
              f"{r['rss_uploads']} concurrent {r['rss_upload_mib']} MiB uploads ({r['rss_seconds']:.0f} s, "
              f"statuses {r['rss_statuses']})")
    out = ROOT / ".run" / "load-swift.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(r, indent=2))
    print(f"(written to {out})")


if __name__ == "__main__":
    main()

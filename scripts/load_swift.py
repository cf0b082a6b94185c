"""See scripts/load-swift. Every load runs against 127.0.0.1 only and is bounded."""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

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


def nginx_reverse_proxy(d: Path, upstream_port: int) -> tuple[peers.Proc, int]:
    """nginx as a keep-alive reverse proxy in front of one backend."""
    port = peers.free_port()
    return start_nginx(d, f"""
  upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 32; }}
  server {{ listen 127.0.0.1:{port};
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


def compare(r, prefix, targets, seconds):
    """GET (wrk) and HEAD (ab) req/s of one small object through each target."""
    for method in ("GET", "HEAD"):
        for who, url, tok in targets:
            measure = wrk if method == "GET" else (lambda u, t, s, _m: ab_head(u, t, s))
            rps, errors = measure(f"{url}/bench/small", tok, seconds, method)
            assert errors == 0, (prefix, who, method, errors)
            r[f"{prefix}{method.lower()}_rps_{who}"] = rps


def table(r, prefix, title):
    print(f"\n{title:34} {'direct':>9} {'nginx':>9} {'proxy':>9} {'proxy/direct':>13} {'proxy/nginx':>12}")
    for m in ("get", "head"):
        d, n, p = (r[f"{prefix}{m}_rps_{w}"] for w in ("direct", "nginx", "proxy"))
        print(f"{m.upper() + ' req/s':34} {d:9.0f} {n:9.0f} {p:9.0f} {p / d:13.2f} {p / n:12.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--containers", type=int, default=100, help="containers per cluster for the listing")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="stackfed-load-swift-"))
    clusters, proxy, nginx = [], None, None
    fast = fast_proxy = fnginx = None
    r = {}
    try:
        clusters = peers.start_clusters(base / "swift", ["east", "west"])
        east = clusters[0]
        proxy = peers.FederationProxy(base / "proxy", clusters)
        proxy.start(ROOT / "target" / "release" / "swift-federation-proxy")
        purl, ptoken = (lambda h: (h["X-Storage-Url"], h["X-Auth-Token"]))(
            requests.get(proxy.auth_url, headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"}).headers)
        eurl, etoken = east.authenticate("test:tester", "testing")
        ph, eh = {"X-Auth-Token": ptoken}, {"X-Auth-Token": etoken}
        requests.put(f"{purl}/bench", headers={**ph, "X-Container-Attr-Cluster": "east"}).raise_for_status()
        requests.put(f"{purl}/bench/small", headers=ph, data=b"x" * 1024).raise_for_status()

        nginx, nport = nginx_reverse_proxy(base / "nginx", east.ports["proxy"])
        nurl = eurl.replace(f":{east.ports['proxy']}", f":{nport}")
        peers.wait_http(f"{nurl}/bench/small", timeout=10, headers=eh)
        compare(r, "", (("direct", eurl, etoken), ("nginx", nurl, etoken), ("proxy", purl, ptoken)),
                args.seconds)

        print(f"creating {args.containers} containers on each cluster", flush=True)
        for i in range(args.containers):
            for c in ("east", "west"):
                requests.put(f"{purl}/list-{c}-{i:04d}", headers={**ph, "X-Container-Attr-Cluster": c}).raise_for_status()
        r["listing_rps_proxy_merged"], e1 = wrk(f"{purl}?format=json", ptoken, args.seconds)
        r["listing_rps_east_direct"], e2 = wrk(f"{eurl}?format=json", etoken, args.seconds)
        assert e1 == 0 and e2 == 0
        r["listing_entries_merged"] = len(requests.get(f"{purl}?format=json", headers=ph).json())
        r["listing_entries_east"] = len(requests.get(f"{eurl}?format=json", headers=eh).json())

        # The same comparison over a fast fake backend, with the real clusters stopped
        # so that their daemons do not take CPU from it.
        nginx.stop()
        proxy.stop()
        for c in clusters:
            c.stop()
        fast, fport = fast_backend(base / "fast")
        furl = f"http://127.0.0.1:{fport}/v1/AUTH_test"
        peers.wait_http(f"{furl}/bench/small", timeout=10)
        fast_proxy = peers.FederationProxy(base / "proxy-fast", [SimpleNamespace(name="fast", endpoint=f"http://127.0.0.1:{fport}")])
        fast_proxy.start(ROOT / "target" / "release" / "swift-federation-proxy")
        fpurl, fptoken = (lambda h: (h["X-Storage-Url"], h["X-Auth-Token"]))(
            requests.get(fast_proxy.auth_url, headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"}).headers)
        fnginx, fnport = nginx_reverse_proxy(base / "fast-nginx", fport)
        fnurl = f"http://127.0.0.1:{fnport}/v1/AUTH_test"
        peers.wait_http(f"{fnurl}/bench/small", timeout=10)
        assert requests.get(f"{fpurl}/bench/small", headers={"X-Auth-Token": fptoken}).content == b"x" * 1024
        compare(r, "fast_", (("direct", furl, "x"), ("nginx", fnurl, "x"), ("proxy", fpurl, fptoken)),
                args.seconds)
    finally:
        for p in (fnginx, fast_proxy, fast, nginx, proxy):
            if p:
                p.stop()
        for c in clusters:
            c.stop()
        shutil.rmtree(base, ignore_errors=True)

    table(r, "", "1 KiB object, real Swift")
    table(r, "fast_", "1 KiB object, fast fake backend")
    print(f"account listing (json) req/s: proxy merging {r['listing_entries_merged']} containers from 2 clusters "
          f"{r['listing_rps_proxy_merged']:.0f}, one cluster's {r['listing_entries_east']} directly "
          f"{r['listing_rps_east_direct']:.0f} (ratio {r['listing_rps_proxy_merged'] / r['listing_rps_east_direct']:.2f})")
    out = ROOT / ".run" / "load-swift.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(r, indent=2))
    print(f"(written to {out})")


if __name__ == "__main__":
    main()

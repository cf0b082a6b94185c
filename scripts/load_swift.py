"""See scripts/load-swift. Every load runs against 127.0.0.1 only and is bounded."""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--containers", type=int, default=100, help="containers per cluster for the listing")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="stackfed-load-swift-"))
    clusters, proxy, nginx = [], None, None
    r = {}
    try:
        clusters = peers.start_clusters(base / "swift", ["east", "west"])
        east = clusters[0]
        proxy = peers.FederationProxy(base / "proxy", clusters)
        proxy.start(ROOT / "target" / "release" / "examples" / "swift-federation-proxy")
        purl, ptoken = (lambda h: (h["X-Storage-Url"], h["X-Auth-Token"]))(
            requests.get(proxy.auth_url, headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"}).headers)
        eurl, etoken = east.authenticate("test:tester", "testing")
        ph, eh = {"X-Auth-Token": ptoken}, {"X-Auth-Token": etoken}
        requests.put(f"{purl}/bench", headers={**ph, "X-Container-Attr-Cluster": "east"}).raise_for_status()
        requests.put(f"{purl}/bench/small", headers=ph, data=b"x" * 1024).raise_for_status()

        nport = peers.free_port()
        (base / "nginx.conf").write_text(f"""
user root; daemon off; worker_processes 1; pid {base}/nginx.pid; error_log {base}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{ access_log off;
  client_body_temp_path {base}/nb; proxy_temp_path {base}/np; fastcgi_temp_path {base}/nf;
  uwsgi_temp_path {base}/nu; scgi_temp_path {base}/ns;
  upstream east {{ server 127.0.0.1:{east.ports['proxy']}; keepalive 32; }}
  server {{ listen 127.0.0.1:{nport};
    location / {{ proxy_pass http://east; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
        nginx = peers.spawn("nginx", [shutil.which("nginx"), "-c", str(base / "nginx.conf")], base / "nginx.log")
        nurl = eurl.replace(f":{east.ports['proxy']}", f":{nport}")
        peers.wait_http(f"{nurl}/bench/small", timeout=10, headers=eh)

        for method in ("GET", "HEAD"):
            for who, url, tok in (("direct", eurl, etoken), ("nginx", nurl, etoken), ("proxy", purl, ptoken)):
                measure = wrk if method == "GET" else (lambda u, t, s, _m: ab_head(u, t, s))
                rps, errors = measure(f"{url}/bench/small", tok, args.seconds, method)
                assert errors == 0, (who, method, errors)
                r[f"{method.lower()}_rps_{who}"] = rps

        print(f"creating {args.containers} containers on each cluster", flush=True)
        for i in range(args.containers):
            for c in ("east", "west"):
                requests.put(f"{purl}/list-{c}-{i:04d}", headers={**ph, "X-Container-Attr-Cluster": c}).raise_for_status()
        r["listing_rps_proxy_merged"], e1 = wrk(f"{purl}?format=json", ptoken, args.seconds)
        r["listing_rps_east_direct"], e2 = wrk(f"{eurl}?format=json", etoken, args.seconds)
        assert e1 == 0 and e2 == 0
        r["listing_entries_merged"] = len(requests.get(f"{purl}?format=json", headers=ph).json())
        r["listing_entries_east"] = len(requests.get(f"{eurl}?format=json", headers=eh).json())
    finally:
        if nginx:
            nginx.stop()
        if proxy:
            proxy.stop()
        for c in clusters:
            c.stop()
        shutil.rmtree(base, ignore_errors=True)

    print(f"\n{'1 KiB object, wrk 16 connections':34} {'direct':>9} {'nginx':>9} {'proxy':>9} {'proxy/direct':>13} {'proxy/nginx':>12}")
    for m in ("get", "head"):
        d, n, p = r[f"{m}_rps_direct"], r[f"{m}_rps_nginx"], r[f"{m}_rps_proxy"]
        print(f"{m.upper() + ' req/s':34} {d:9.0f} {n:9.0f} {p:9.0f} {p / d:13.2f} {p / n:12.2f}")
    print(f"account listing (json) req/s: proxy merging {r['listing_entries_merged']} containers from 2 clusters "
          f"{r['listing_rps_proxy_merged']:.0f}, one cluster's {r['listing_entries_east']} directly "
          f"{r['listing_rps_east_direct']:.0f} (ratio {r['listing_rps_proxy_merged'] / r['listing_rps_east_direct']:.2f})")
    out = ROOT / ".run" / "load-swift.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(r, indent=2))
    print(f"(written to {out})")


if __name__ == "__main__":
    main()

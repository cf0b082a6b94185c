"""Where a merged account listing's time goes (issue 13), in small interleaved steps.

Starts two real Swift clusters (east, west; their proxy and account servers log each
request with its time, `log_level = INFO`), N containers on each, the federation proxy
over both and a second proxy over east only, then asks, one round after another on one
keep-alive connection per side:

- `proxy2`: the merged listing through the proxy over both clusters;
- `proxy1`: the proxy over east only (its own overhead without the fan-out);
- `east`, `west`: each cluster's own listing;
- `both`: east and west asked at the same moment by two threads, no proxy (the
  fan-out's floor: two Python clusters sharing the cores); the time until both
  answers are read.

Prints median / p95 per side with the load average, the ratios to the slower cluster,
and from the clusters' own logs the median request time Swift's proxy and account
server took for the federation proxy's requests and for the direct ones.

The order of the sides is shuffled in each round: a Swift server still works (logs,
finishes its greenthread) after it has answered, so a fixed order gives whichever side
comes right after a request to the same cluster a handicap.

  ./.venv/bin/python scripts/listing_breakdown.py --binary target/release/swift-federation-proxy
"""

import argparse
import http.client
import json
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))
import peers  # noqa: E402

_write_config = peers.SwiftCluster.write_config


def _write_config_logging(self):
    """The cluster as peers.py writes it, with INFO logs (one line per request, with
    its time) from the proxy and account servers."""
    _write_config(self)
    for kind in ("proxy", "account"):
        conf = self.base / f"{kind}-server.conf"
        conf.write_text(conf.read_text().replace("log_level = WARNING", "log_level = INFO"))


peers.SwiftCluster.write_config = _write_config_logging


class Side:
    def __init__(self, name, url, token):
        u = urlsplit(url)
        self.name, self.host, self.port = name, u.hostname, u.port
        self.path, self.token = f"{u.path}?format=json", token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self.entries = 0

    def get(self):
        t = time.perf_counter()
        self.conn.request("GET", self.path, headers={"X-Auth-Token": self.token})
        resp = self.conn.getresponse()
        body = resp.read()
        end = time.perf_counter()
        assert resp.status == 200, (self.name, resp.status, body[:200])
        self.entries = len(json.loads(body))
        return t, end


class Pair:
    """Two sides asked at the same moment from two threads."""

    def __init__(self, a: Side, b: Side):
        self.sides = (a, b)
        self.go = threading.Barrier(3)
        self.done = threading.Barrier(3)
        self.times = [None, None]
        self.stop = False
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in (0, 1)]
        for t in self.threads:
            t.start()

    def _run(self, i):
        while True:
            self.go.wait()
            if self.stop:
                return
            self.times[i] = self.sides[i].get()
            self.done.wait()

    def get(self):
        self.go.wait()
        self.done.wait()
        return min(t[0] for t in self.times), max(t[1] for t in self.times)

    def close(self):
        self.stop = True
        self.go.wait()


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


def swift_times(log: Path):
    """Request times (ms) of the client's account GETs in a Swift server log, split by
    who asked: the federation proxy (its transaction id carries ours as the extra
    part, so it has a second `-`) or a client directly. Swift's own subrequests (the
    object versioning middleware lists the account's `\\x00versions` containers on
    each account GET) are left out."""
    mine, direct = [], []
    account = "account" in log.name
    for line in log.read_text(errors="replace").splitlines():
        if account:
            m = re.search(r'"GET /d1/\d+/AUTH_test" 200 \d+ "GET ([^"]*)" "(tx[^"]*)" "proxy-server \d+" ([\d.]+)',
                          line)
            if not m or "versions" in m.group(1) or "format=json" not in m.group(1):
                continue
            txid, secs = m.group(2), float(m.group(3))
        else:
            f = line.split()
            if len(f) < 17 or f[4] != "GET" or f[1] == "-" or not f[5].startswith("/v1/AUTH_test%3F"):
                continue
            txid, secs = f[14], float(f[16])
        (mine if txid.count("-") > 1 else direct).append(secs * 1000)
    return mine, direct


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(peers.built("swift-federation-proxy", "release")))
    ap.add_argument("--binary-b", help="a second build: its proxy over both clusters is measured as proxy2b")
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=250)
    ap.add_argument("--sides", default="proxy2,proxy1,east,west,both")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="stackfed-listing-"))
    clusters, proxies = [], []
    login = {"X-Auth-User": "test:tester", "X-Auth-Key": "testing"}
    sides = []
    try:
        clusters = peers.start_clusters(base / "swift", ["east", "west"])
        east, west = clusters
        p2 = peers.FederationProxy(base / "proxy2", clusters)
        p1 = peers.FederationProxy(base / "proxy1", [east])
        proxies = [p2, p1]
        if args.binary_b:
            p2b = peers.FederationProxy(base / "proxy2b", clusters)
            proxies.append(p2b)
        for p in proxies:
            p.start(Path(args.binary_b) if p.base.name == "proxy2b" else Path(args.binary))

        def proxy_login(p):
            h = requests.get(p.auth_url, headers=login).headers
            return h["X-Storage-Url"], h["X-Auth-Token"]

        purl, ptoken = proxy_login(p2)
        ph = {"X-Auth-Token": ptoken}
        for i in range(args.containers):
            for c in ("east", "west"):
                requests.put(f"{purl}/list-{c}-{i:04d}",
                             headers={**ph, "X-Container-Attr-Cluster": c}).raise_for_status()
        want = set(args.sides.split(","))
        eurl, etoken = east.authenticate("test:tester", "testing")
        wurl, wtoken = west.authenticate("test:tester", "testing")
        if "proxy2" in want:
            sides.append(Side("proxy2", purl, ptoken))
        if args.binary_b:
            sides.append(Side("proxy2b", *proxy_login(proxies[2])))
        if "proxy1" in want:
            sides.append(Side("proxy1", *proxy_login(p1)))
        if "east" in want:
            sides.append(Side("east", eurl, etoken))
        if "west" in want:
            sides.append(Side("west", wurl, wtoken))
        if "both" in want:
            pair = Pair(Side("east", eurl, etoken), Side("west", wurl, wtoken))
            pair.name = "both"
            sides.append(pair)
        ms = {s.name: [] for s in sides}
        loads = [os.getloadavg()[0]]
        rng = random.Random(13)
        for i in range(args.rounds + 10):
            rng.shuffle(sides)
            for s in sides:
                t, end = s.get()
                if i >= 10:
                    ms[s.name].append((end - t) * 1000)
            if i % 50 == 0:
                loads.append(os.getloadavg()[0])
        loads.append(os.getloadavg()[0])
        print(f"{args.rounds} interleaved rounds, {args.containers} containers per cluster; "
              f"load average (1 min) {min(loads):.1f}–{max(loads):.1f}")
        for s in sorted(sides, key=lambda s: list(ms).index(s.name)):
            n = s.sides[0].entries + s.sides[1].entries if isinstance(s, Pair) else s.entries
            print(f"  {s.name:8} p50 {statistics.median(ms[s.name]):6.2f} ms  p95 {pct(ms[s.name], 0.95):6.2f} ms"
                  f"  ({n} entries)")
        med = {k: statistics.median(v) for k, v in ms.items()}
        if "east" in med and "west" in med:
            slower = max(med["east"], med["west"])
            for k in ("proxy2", "proxy2b", "both"):
                if k in med:
                    print(f"  {k} / slower cluster p50: {med[k] / slower:.2f}")
            if "proxy1" in med:
                print(f"  proxy1 - east p50: {med['proxy1'] - med['east']:+.2f} ms")
        for c in clusters:
            for kind in ("proxy", "account"):
                log = c.base / "log" / f"{kind}.log"
                if not log.exists():
                    continue
                mine, direct = swift_times(log)
                if mine and direct:
                    print(f"  {c.name} {kind}-server request time p50: for the federation proxy "
                          f"{statistics.median(mine):.2f} ms (n={len(mine)}), direct "
                          f"{statistics.median(direct):.2f} ms (n={len(direct)})")
    finally:
        for s in sides:
            if isinstance(s, Pair):
                s.close()
        for p in proxies:
            p.stop()
        for c in clusters:
            c.stop()
        if not args.keep:
            import shutil
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}")


if __name__ == "__main__":
    main()

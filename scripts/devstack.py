"""Runs the local federation until Ctrl-C; see scripts/run."""

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))
import peers  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description="Two real Swift clusters and the federation proxy.")
    ap.add_argument("--dir", default=str(ROOT / ".run"), help="state directory (default .run/)")
    ap.add_argument("--for-seconds", type=float, default=0,
                    help="stop by itself after this many seconds (0: run until Ctrl-C)")
    args = ap.parse_args()
    base = Path(args.dir)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    clusters, proxy, central, edge = [], None, None, None
    try:
        print("stackfed: starting Swift clusters east (tier=gold) and west (tier=silver)", flush=True)
        clusters = peers.start_clusters(base / "swift", ["east", "west"])
        # The clusters start empty each run, so the proxy's records must too.
        shutil.rmtree(base / "proxy", ignore_errors=True)
        proxy = peers.FederationProxy(
            base / "proxy", clusters,
            labels={"east": {"tier": "gold"}, "west": {"tier": "silver"}},
        )
        proxy.start(peers.ROOT / "target" / "debug" / "swift-federation-proxy")
        print("stackfed: starting the central Glance and the edge cache", flush=True)
        central = peers.GlanceCentral(base / "glance-central")
        central.start()
        edge = peers.GlanceEdge(base / "glance-edge", central.endpoint, freshness_seconds=30)
        edge.start(peers.ROOT / "target" / "debug" / "glance-edge-cache")
        swift = f"{peers.VENV_BIN / 'swift'} -A {proxy.auth_url} -U test:tester -K testing"
        gl = f"{peers.VENV_BIN / 'glance'} --os-auth-token noauth --os-image-url"
        print(f"""
stackfed federation is up:
  proxy     {proxy.endpoint}   (log: {proxy.base / 'proxy.log'})
  east      {clusters[0].endpoint}   tier=gold
  west      {clusters[1].endpoint}   tier=silver

Try:
  {swift} post -H 'X-Container-Attr-Tier: gold' reports
  {swift} upload reports README.md
  {swift} stat reports          # X-Container-Attr-Cluster says where it lives
  {swift} list
  {swift} stat                  # usage summed over both clusters
  curl -s {proxy.endpoint}/info | python3 -m json.tool

glance edge cache is up:
  edge      {edge.endpoint}   (log: {edge.base / 'edge.log'}, cache: {edge.cache_dir})
  central   {central.endpoint}   (real Glance, no Keystone)

Try:
  qemu-img create -f qcow2 /tmp/demo.qcow2 64M
  {gl} {central.endpoint} image-create --name demo --disk-format qcow2 --container-format bare --visibility public --file /tmp/demo.qcow2
  {gl} {edge.endpoint} image-list
  {gl} {edge.endpoint} image-download --file /tmp/demo-copy.qcow2 <ID>
  curl -s {edge.endpoint}/healthcheck

Ctrl-C stops everything.""", flush=True)
        started = time.monotonic()
        while not stopping:
            if args.for_seconds and time.monotonic() - started > args.for_seconds:
                break
            for p in [proxy.proc, central.proc, edge.proc] + [q for c in clusters for q in c.procs]:
                if p is not None and not p.alive():
                    print(f"stackfed: {p.name} exited; see {p.log}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        print("stackfed: stopping", flush=True)
        for x in (edge, central, proxy):
            if x:
                x.stop()
        for c in clusters:
            c.stop()


if __name__ == "__main__":
    sys.exit(main())

"""Runs the local federation until Ctrl-C; see scripts/run."""

import argparse
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
    clusters, proxy = [], None
    try:
        print("stackfed: starting Swift clusters east (tier=gold) and west (tier=silver)", flush=True)
        clusters = peers.start_clusters(base / "swift", ["east", "west"])
        proxy = peers.FederationProxy(
            base / "proxy", clusters,
            labels={"east": {"tier": "gold"}, "west": {"tier": "silver"}},
        )
        proxy.start(peers.ROOT / "target" / "debug" / "examples" / "swift-federation-proxy")
        swift = f"{peers.VENV_BIN / 'swift'} -A {proxy.auth_url} -U test:tester -K testing"
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

Ctrl-C stops everything.""", flush=True)
        started = time.monotonic()
        while not stopping:
            if args.for_seconds and time.monotonic() - started > args.for_seconds:
                break
            for p in [proxy.proc] + [q for c in clusters for q in c.procs]:
                if p is not None and not p.alive():
                    print(f"stackfed: {p.name} exited; see {p.log}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        print("stackfed: stopping", flush=True)
        if proxy:
            proxy.stop()
        for c in clusters:
            c.stop()


if __name__ == "__main__":
    sys.exit(main())

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


# Live container migration and its admin API (`./scripts/run --migration`): the operator
# is the clusters' tempauth reseller admin (tests/interop/peers.py). The README shows it.
MIGRATION_TOML = 'migration = { operator_user = "admin:admin", operator_key = "admin" }\n'


def main() -> int:
    ap = argparse.ArgumentParser(description="Two real Swift clusters and the federation proxy.")
    ap.add_argument("--keystone", action="store_true",
                    help="everything behind a real Keystone: the clusters with authtoken + "
                         "keystoneauth, the proxy and the edge in Keystone mode, a Keystone-"
                         "protected central Glance, the proxy and the edge in the catalog")
    ap.add_argument("--migration", action="store_true",
                    help="enable live container migration ([migration], operator admin:admin) "
                         "and its admin API /federation/v1/... on the proxy (off by default)")
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
    clusters, proxy, central, edge, keystone = [], None, None, None, None
    try:
        if args.keystone:
            print("stackfed: starting Keystone (first start: about a minute)", flush=True)
            shutil.rmtree(base / "keystone", ignore_errors=True)
            keystone = peers.Keystone(base / "keystone")
            keystone.start()
            return run_keystone(base, keystone, lambda: stopping, args.for_seconds)
        print("stackfed: starting Swift clusters east (tier=gold) and west (tier=silver)", flush=True)
        clusters = peers.start_clusters(base / "swift", ["east", "west"])
        # The clusters start empty each run, so the proxy's records must too.
        shutil.rmtree(base / "proxy", ignore_errors=True)
        proxy_metrics, edge_metrics = peers.free_port(), peers.free_port()
        proxy = peers.FederationProxy(
            base / "proxy", clusters,
            labels={"east": {"tier": "gold"}, "west": {"tier": "silver"}},
            extra_toml=(f'metrics_listen = "127.0.0.1:{proxy_metrics}"\n'
                        f'disable_path = "{base / "proxy" / "disabled"}"\n'
                        + (MIGRATION_TOML if args.migration else "")),
        )
        proxy.start(peers.built("swift-federation-proxy"))
        print("stackfed: starting the central Glance and the edge cache", flush=True)
        central = peers.GlanceCentral(base / "glance-central")
        central.start()
        edge = peers.GlanceEdge(base / "glance-edge", central.endpoint, freshness_seconds=30,
                                extra_toml=(f'metrics_listen = "127.0.0.1:{edge_metrics}"\n'
                                            f'disable_path = "{base / "glance-edge" / "disabled"}"\n'))
        edge.start(peers.built("glance-edge-cache"))
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
  curl -s http://127.0.0.1:{proxy_metrics}/metrics     # Prometheus metrics (admin listener)
  touch {base / 'proxy' / 'disabled'}      # drain: /healthcheck answers 503 until removed
{migration_hint(proxy) if args.migration else "  (live migration is off: ./scripts/run --migration turns it on)"}

glance edge cache is up:
  edge      {edge.endpoint}   (log: {edge.base / 'edge.log'}, cache: {edge.cache_dir})
  central   {central.endpoint}   (real Glance, no Keystone)

Try:
  qemu-img create -f qcow2 /tmp/demo.qcow2 64M
  {gl} {central.endpoint} image-create --name demo --disk-format qcow2 --container-format bare --visibility public --file /tmp/demo.qcow2
  {gl} {edge.endpoint} image-list
  {gl} {edge.endpoint} image-download --file /tmp/demo-copy.qcow2 <ID>
  curl -s {edge.endpoint}/healthcheck
  curl -s http://127.0.0.1:{edge_metrics}/metrics
  touch {base / 'glance-edge' / 'disabled'}

Ctrl-C stops everything.""", flush=True)
        return watch([proxy.proc, central.proc, edge.proc] + [q for c in clusters for q in c.procs],
                     lambda: stopping, args.for_seconds)
    finally:
        print("stackfed: stopping", flush=True)
        for x in (edge, central, proxy):
            if x:
                x.stop()
        for c in clusters:
            c.stop()
        if keystone:
            keystone.stop()


def migration_hint(proxy) -> str:
    """The admin API's commands to try (live migration on)."""
    return (f"  cargo run --example federation-migrate -- --proxy {proxy.endpoint} --user admin:admin "
            "--key admin move AUTH_test reports --wait   # live move to the other cluster")


def watch(procs, stopping, for_seconds: float) -> int:
    """Waits for Ctrl-C (or `for_seconds`); 1 if a process exits meanwhile."""
    started = time.monotonic()
    while not stopping():
        if for_seconds and time.monotonic() - started > for_seconds:
            break
        for p in procs:
            if p is not None and not p.alive():
                print(f"stackfed: {p.name} exited; see {p.log}", file=sys.stderr)
                return 1
        time.sleep(0.5)
    return 0


def run_keystone(base: Path, keystone, stopping, for_seconds: float) -> int:
    """The Keystone layout of the README's Keystone sections, with the users of
    tests/interop/peers.py (alice and bob: members of projects alpha and beta; rita:
    reader of alpha; stackfed and stackfed-edge: the proxy's and the edge's service
    users). Stopped by the caller's keystone.stop() after its own parts."""
    clusters, proxy, central, edge = [], None, None, None
    try:
        print("stackfed: starting Swift clusters east and west behind Keystone", flush=True)
        clusters = peers.start_clusters(base / "swift-ks", ["east", "west"], keystone=keystone)
        shutil.rmtree(base / "proxy-ks", ignore_errors=True)
        proxy = peers.FederationProxy(
            base / "proxy-ks", clusters,
            store=f'{{ kind = "swift", endpoint = "{clusters[0].endpoint}" }}',
            auth_toml=('{ kind = "keystone", auth_url = "%s", user = "stackfed", '
                       'password = { env = "STACKFED_KEYSTONE_PASSWORD" }, project = "service" }'
                       % keystone.auth_url),
            env={"STACKFED_KEYSTONE_PASSWORD": keystone.users["stackfed"].password},
        )
        proxy.start(peers.built("swift-federation-proxy"))
        keystone.add_endpoint("object-store", "swift", f"{proxy.endpoint}/v1/AUTH_%(project_id)s")
        print("stackfed: starting the central Glance and the edge cache behind Keystone", flush=True)
        shutil.rmtree(base / "glance-central-ks", ignore_errors=True)
        shutil.rmtree(base / "glance-edge-ks", ignore_errors=True)
        central = peers.GlanceCentral(base / "glance-central-ks", keystone=keystone)
        central.start()
        keystone.add_endpoint("image", "glance", central.endpoint)
        password = base / "edge-keystone-password"
        password.write_text(keystone.users["stackfed-edge"].password + "\n")
        password.chmod(0o600)
        edge = peers.GlanceEdge(base / "glance-edge-ks", central.endpoint, freshness_seconds=30,
                                identity="keystone", extra_toml=(
                                    "\n[keystone]\n"
                                    f'auth_url = "{keystone.auth_url}"\n'
                                    'username = "stackfed-edge"\n'
                                    f'password_file = "{password}"\n'))
        edge.start(peers.built("glance-edge-cache"))
        keystone.add_endpoint("image", "glance-edge-1", edge.endpoint, region="Edge1")
        env = " ".join(f"{k}={v}" for k, v in keystone.os_env("alice").items())
        osc = peers.VENV_BIN / "openstack"
        print(f"""
stackfed behind Keystone is up:
  keystone  {keystone.auth_url}   (log: {keystone.base / 'keystone.log'})
  proxy     {proxy.endpoint}   (log: {proxy.base / 'proxy.log'}; catalog: object-store, RegionOne)
  east      {clusters[0].endpoint}   west  {clusters[1].endpoint}   (authtoken + keystoneauth)
  central   {central.endpoint}   (real Glance behind auth_token; catalog: image, RegionOne)
  edge      {edge.endpoint}   (log: {edge.base / 'edge.log'}; catalog: image, region Edge1)
Users (project: role): alice alice-pw (alpha: member), bob bob-pw (beta: member),
rita rita-pw (alpha: reader), admin {keystone.admin_password} (admin, alpha: admin).

Try, as alice (swift and openstack find the proxy in the catalog):
  export {env}
  {osc} container create reports
  {osc} object create reports README.md
  {osc} object list reports
  {peers.VENV_BIN / 'swift'} --auth-version 3 stat
  qemu-img create -f qcow2 /tmp/demo.qcow2 64M
  {osc} image create --disk-format qcow2 --container-format bare --file /tmp/demo.qcow2 demo
  OS_REGION_NAME=Edge1 {osc} image list        # through the edge
  OS_REGION_NAME=Edge1 {osc} image save --file /tmp/demo-copy.qcow2 demo

Ctrl-C stops everything.""", flush=True)
        return watch([proxy.proc, central.proc, edge.proc, keystone.proc]
                     + [q for c in clusters for q in c.procs], stopping, for_seconds)
    finally:
        for x in (edge, central, proxy):
            if x:
                x.stop()
        for c in clusters:
            c.stop()


if __name__ == "__main__":
    sys.exit(main())

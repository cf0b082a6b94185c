"""See scripts/profile-glance. Instructions per metadata GET (`GET /v2/images/{id}` of a
cached image record), counted with callgrind: repeatable on a machine that other work
keeps busy, where wall-clock load figures are not. The runner, the keep-alive load and
the annotation are scripts/profile_swift.py's."""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))
sys.path.insert(0, str(ROOT / "scripts"))
import peers  # noqa: E402
from load_swift import NGINX_HEAD  # noqa: E402
from profile_swift import callgrind_args, fresh_outdir, print_top, profile  # noqa: E402

# An image as a Glance user makes one (the `glance image-create` fields and a few custom
# properties); the central fills in the rest (checksums, size, dates, os_* fields).
IMAGE = {"name": "cirros-0.6.2-x86_64", "disk_format": "raw", "container_format": "bare",
         "visibility": "public", "min_ram": 64, "min_disk": 1, "tags": ["edge", "bench"],
         "os_distro": "cirros", "os_version": "0.6.2", "hw_disk_bus": "virtio", "architecture": "x86_64"}


def main():
    ap = argparse.ArgumentParser()
    callgrind_args(ap, "profile-glance", "metadata GETs counted per server")
    ap.add_argument("--binary", default=str(peers.built("glance-edge-cache", "release")))
    ap.add_argument("--baseline", help="also count this edge binary (e.g. main's release build) in the same run")
    ap.add_argument("--no-nginx", action="store_true", help="skip nginx serving the same bytes as a static file")
    args = ap.parse_args()
    outdir = fresh_outdir(args)
    base = Path(tempfile.mkdtemp(prefix="stackfed-profile-glance-"))
    central = peers.GlanceCentral(base / "central", workers=1)
    results = {}
    try:
        central.start()
        r = requests.post(central.endpoint + "/v2/images", json=IMAGE, timeout=30)
        r.raise_for_status()
        image_id = r.json()["id"]
        requests.put(f"{central.endpoint}/v2/images/{image_id}/file", data=os.urandom(64 << 10), timeout=30,
                     headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        path = f"/v2/images/{image_id}"
        glance_body = requests.get(central.endpoint + path, timeout=30).content
        edges = [("edge", args.binary)] + ([("baseline", args.baseline)] if args.baseline else [])
        for name, binary in edges:
            # Fresh for an hour: every counted GET is served from the cached record, the
            # central is not asked (the first GET, a warm-up, records it).
            edge = peers.GlanceEdge(base / name, central.endpoint, freshness_seconds=3600)
            conf = edge.write_config()
            url = edge.endpoint + path
            results[name] = profile(name, [binary, "--config", str(conf)], edge.port, path, "x", outdir, args,
                                    url, methods=("GET",), env={"RUST_LOG": "info"})
        # What the edge answers, for nginx: one more edge, not under valgrind.
        edge = peers.GlanceEdge(base / "plain", central.endpoint, freshness_seconds=3600)
        edge.start(Path(args.binary))
        try:
            edge_body = requests.get(edge.endpoint + path, timeout=30).content
        finally:
            edge.stop()
        if not args.no_nginx:
            d = base / "nginx"
            www = d / "www"
            (www / "v2" / "images").mkdir(parents=True)
            (www / "v2" / "images" / image_id).write_bytes(edge_body)
            nport = peers.free_port()
            conf = d / "nginx.conf"
            conf.write_text("master_process off;\n" + NGINX_HEAD.format(d=d) + f"""
  server {{ listen 127.0.0.1:{nport}; root {www}; default_type "application/json; charset=UTF-8"; }}
}}
""")
            results["nginx"] = profile("nginx", [shutil.which("nginx"), "-c", str(conf)], nport, path, "x",
                                       outdir, args, f"http://127.0.0.1:{nport}{path}", methods=("GET",))
    finally:
        central.stop()
        shutil.rmtree(base, ignore_errors=True)

    print(f"\ninstructions per metadata GET {path} (callgrind, user space only; {args.requests} keep-alive "
          f"requests over {args.connections} connection(s); a cached {len(edge_body)}-byte image record, "
          f"the central's own answer {len(glance_body)} bytes)")
    for who, figures in results.items():
        ir, elapsed, final = figures["GET"]
        print(f"  {who:9} {ir:10,.0f}   ({elapsed:.1f} s under valgrind; {final})")
    for who in ("baseline", "nginx"):
        if who in results:
            print(f"  edge / {who}: {results['edge']['GET'][0] / results[who]['GET'][0]:.2f}")
    final = results["edge"]["GET"][2]
    print_top("edge GET", final, args.top, inclusive=True)
    print_top("edge GET", final, args.top, inclusive=False)


if __name__ == "__main__":
    main()

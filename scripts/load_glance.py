"""See scripts/load-glance. Every load runs against 127.0.0.1 only and is bounded."""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))
import peers  # noqa: E402


def wrk(url, seconds, connections=16):
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url],
                         capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, int(errors.group(1)) if errors else 0


def download_mb_s(url, runs=3):
    speeds = []
    for _ in range(runs):
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{http_code}", url],
                             capture_output=True, text=True, check=True, timeout=300).stdout.split()
        assert out[1] == "200", out
        speeds.append(float(out[0]) / 1e6)
    return statistics.median(speeds)


def spread(values):
    """Median (min–max) of `values`."""
    v = sorted(values)
    return f"{statistics.median(v):.2f} ({v[0]:.2f}–{v[-1]:.2f})"


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid):
    """User plus system CPU-seconds of a process and of its live children (a gunicorn
    master and its workers): far less sensitive to a busy machine than wall time."""
    tick = os.sysconf("SC_CLK_TCK")

    def own(p):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return 0.0
        # After the command: state is field 3, utime 14 and stime 15 (1-based).
        return (int(fields[11]) + int(fields[12])) / tick

    total = own(pid)
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            if ppid == pid:
                total += own(int(d.name))
    return total


def first_downloads(edge, central, cached_glance, edge_meta, glance_meta, rounds, size, perf=None):
    """The first (cache-filling) download through the edge and through Glance's own
    cache, interleaved with a plain download straight from the edge's central (the
    edge's source: the edge cannot hand out bytes faster than the central hands them
    to it), `rounds` times: wall time and CPU-seconds of each process involved. Each
    round empties both caches first (their cache APIs)."""
    out = []
    image_id = edge_meta.rsplit("/", 1)[1]
    glance_id = glance_meta.rsplit("/", 1)[1]
    for _ in range(rounds):
        row = {}
        for side in ("edge", "glance", "source"):
            if side == "source":
                url = central.endpoint + edge_meta + "/file"
                procs = {"central_direct": central.proc.pid}
            elif side == "edge":
                requests.delete(f"{edge.endpoint}/v2/cache/{image_id}").raise_for_status()
                url = edge.endpoint + edge_meta + "/file"
                procs = {"edge": edge.proc.pid, "central": central.proc.pid}
            else:
                requests.delete(f"{cached_glance.endpoint}/v2/cache/{glance_id}").raise_for_status()
                url = cached_glance.endpoint + glance_meta + "/file"
                procs = {"glance_cache": cached_glance.proc.pid}
            time.sleep(0.5)
            recorder = None
            if perf and side == "edge":
                # Where the edge's CPU goes (`perf report -i FILE`), sampled at 999 Hz.
                recorder = subprocess.Popen(["perf", "record", "-q", "-F", "999", "-g", "-p", str(edge.proc.pid),
                                             "-o", str(Path(perf) / f"edge-fill-{len(out)}.data")],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
            before = {k: cpu_seconds(p) for k, p in procs.items()}
            t = time.monotonic()
            # The last byte's hold: from the moment all but the last byte had arrived to the
            # end (the edge holds the last byte until the data is verified and durable).
            received, all_but_last = 0, None
            with requests.get(url, stream=True, timeout=300) as r:
                assert r.status_code == 200, r.status_code
                # (Glance's own cache sends a cache miss chunked, without a length.)
                # read1: what has arrived, without waiting for a whole buffer (which
                # would wait for the held byte too).
                while chunk := r.raw.read1(1 << 20):
                    received += len(chunk)
                    if all_but_last is None and received >= size - 1:
                        all_but_last = time.monotonic()
            wall = time.monotonic() - t
            assert received == size, (received, size)
            row[f"{side}_last_byte_hold_s"] = time.monotonic() - all_but_last
            if recorder:
                time.sleep(0.5)
                recorder.send_signal(2)
                recorder.wait(timeout=60)
            # Glance finishes its cache file after the last byte went out: let it.
            time.sleep(1.0)
            row[f"{side}_wall_s"] = wall
            for k, p in procs.items():
                row[f"{k}_cpu_s"] = cpu_seconds(p) - before[k]
        print(f"  edge {row['edge_wall_s']:.2f} s wall (last byte held {row['edge_last_byte_hold_s']:.3f} s), "
              f"{row['edge_cpu_s']:.2f} CPU-s "
              f"(central Glance serving it {row['central_cpu_s']:.2f} CPU-s); Glance's own cache fill "
              f"{row['glance_wall_s']:.2f} s wall, {row['glance_cache_cpu_s']:.2f} CPU-s; "
              f"straight from the central {row['source_wall_s']:.2f} s wall", flush=True)
        out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--only", choices=["all", "first"], default="all",
                    help="first: only the cache-filling download, edge vs Glance's own cache")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds: of each comparison (metadata GET, cached download) or of --only first")
    ap.add_argument("--perf", help="with --only first: a directory for a perf profile of each edge fill")
    ap.add_argument("--binary", default=str(peers.built("glance-edge-cache", "release")))
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="stackfed-load-"))
    # The edge sits in front of a plain Glance; Glance's own cache is measured on a
    # second Glance, so neither pays for the other's cache filling.
    central = peers.GlanceCentral(base / "central", workers=2)
    cached_glance = peers.GlanceCentral(base / "central-with-cache", own_cache=True, workers=2)
    edge = peers.GlanceEdge(base / "edge", "", freshness_seconds=30)
    nginx = None
    results = {}
    try:
        central.start()
        cached_glance.start()
        edge.central_url = central.endpoint
        edge.start(Path(args.binary))
        print(f"uploading a {args.size_mib} MiB image to the central Glance", flush=True)
        img = base / "image.raw"
        with open(img, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        ids = {}
        for g in (central, cached_glance):
            r = requests.post(g.endpoint + "/v2/images", json={
                "name": "load", "disk_format": "raw", "container_format": "bare", "visibility": "public"})
            ids[g.base.name] = r.json()["id"]
            with open(img, "rb") as f:
                requests.put(f"{g.endpoint}/v2/images/{ids[g.base.name]}/file", data=f,
                             headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        image_id = ids[central.base.name]
        cached_meta = f"/v2/images/{ids[cached_glance.base.name]}"

        meta = f"/v2/images/{image_id}"
        requests.get(edge.endpoint + meta).raise_for_status()
        if args.only == "first":
            print(f"load average {os.getloadavg()}", flush=True)
            rows = first_downloads(edge, central, cached_glance, meta, cached_meta, args.rounds,
                                   args.size_mib << 20, args.perf)
            print(f"load average {os.getloadavg()}", flush=True)
            results["first"] = rows
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            lo_hi = {k: (min(r[k] for r in rows), max(r[k] for r in rows)) for k in rows[0]}
            print(f"\nfirst (cache-filling) {args.size_mib} MiB download, median (min-max) of {args.rounds}:")
            for k in rows[0]:
                print(f"  {k:22} {med[k]:7.2f} ({lo_hi[k][0]:.2f}-{lo_hi[k][1]:.2f})")
            ratios = [r["edge_wall_s"] / r["glance_wall_s"] for r in rows]
            cpu = [r["edge_cpu_s"] / r["glance_cache_cpu_s"] for r in rows]
            print(f"  edge / Glance wall time {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}), "
                  f"CPU-seconds {statistics.median(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f})")
            src = [r["source_wall_s"] / r["glance_wall_s"] for r in rows]
            via = [r["edge_wall_s"] / r["source_wall_s"] for r in rows]
            print(f"  the edge's source (straight from the central) / Glance's own cache fill "
                  f"{statistics.median(src):.2f} ({min(src):.2f}-{max(src):.2f}); "
                  f"edge / its source {statistics.median(via):.2f} ({min(via):.2f}-{max(via):.2f})")
            out = ROOT / ".run" / "load-glance-first.json"
            out.parent.mkdir(exist_ok=True)
            out.write_text(json.dumps(results, indent=2))
            return
        print(f"load average {os.getloadavg()}", flush=True)
        results["rounds"] = args.rounds
        results["metadata_rps_edge"], results["metadata_rps_glance"] = [], []
        for _ in range(args.rounds):
            # Interleaved: each round's ratio compares the two under the same load.
            for side, endpoint in (("edge", edge.endpoint), ("glance", central.endpoint)):
                rps, errors = wrk(endpoint + meta, args.seconds)
                assert errors == 0, (side, errors)
                results[f"metadata_rps_{side}"].append(rps)

        # Warm both caches (the first download fills them), then measure cached reads.
        t = time.time()
        requests.get(edge.endpoint + meta + "/file").raise_for_status()
        results["first_download_s_edge"] = time.time() - t
        t = time.time()
        requests.get(cached_glance.endpoint + cached_meta + "/file").raise_for_status()
        results["first_download_s_glance"] = time.time() - t
        time.sleep(1)
        assert (cached_glance.base / "glance-cache" / ids[cached_glance.base.name]).exists(), \
            "Glance's own cache did not fill"

        www = base / "www"
        www.mkdir()
        shutil.copy(img, www / "image.raw")
        nport = peers.free_port()
        (base / "nginx.conf").write_text(f"""
user root; daemon off; worker_processes 1; pid {base}/nginx.pid; error_log {base}/nginx-error.log;
events {{ worker_connections 256; }}
http {{ access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path {base}/nb; proxy_temp_path {base}/np; fastcgi_temp_path {base}/nf;
  uwsgi_temp_path {base}/nu; scgi_temp_path {base}/ns;
  server {{ listen 127.0.0.1:{nport}; root {www}; }} }}
""")
        nginx = peers.spawn("nginx", [shutil.which("nginx"), "-c", str(base / "nginx.conf")], base / "nginx.log")
        peers.wait_http(f"http://127.0.0.1:{nport}/image.raw", timeout=10)

        sides = (("edge", edge.endpoint + meta + "/file"),
                 ("glance_cache", cached_glance.endpoint + cached_meta + "/file"),
                 ("nginx", f"http://127.0.0.1:{nport}/image.raw"))
        for side, _ in sides:
            results[f"download_mb_s_{side}"] = []
        for _ in range(args.rounds):
            for side, url in sides:
                results[f"download_mb_s_{side}"].append(download_mb_s(url, runs=1))
        print(f"load average {os.getloadavg()}", flush=True)

        rss_before = peak_rss_mib(edge.proc.pid)
        threads = [threading.Thread(target=lambda: download_mb_s(edge.endpoint + meta + "/file", runs=1))
                   for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        results["edge_peak_rss_mib_before"] = rss_before
        results["edge_peak_rss_mib_8_downloads"] = peak_rss_mib(edge.proc.pid)
        results["image_mib"] = args.size_mib
    finally:
        if nginx:
            nginx.stop()
        edge.stop()
        central.stop()
        cached_glance.stop()
        shutil.rmtree(base, ignore_errors=True)

    out = ROOT / ".run" / "load-glance.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    r = results
    med = statistics.median
    rows = [
        ("metadata GET /v2/images/{id} (req/s, wrk 16 conns)", r["metadata_rps_edge"], r["metadata_rps_glance"], None),
        (f"cached {r['image_mib']} MiB download (MB/s)", r["download_mb_s_edge"], r["download_mb_s_glance_cache"],
         r["download_mb_s_nginx"]),
    ]
    print(f"\n(medians of {r['rounds']} interleaved rounds; ratios: median (min–max) of the per-round ratios)")
    print(f"{'measure':52} {'edge':>8} {'glance':>8} {'nginx':>8} {'edge/glance':>19} {'edge/nginx':>19}")
    for name, e, g, n in rows:
        print(f"{name:52} {med(e):8.1f} {med(g):8.1f} {(f'{med(n):.1f}' if n else '-'):>8} "
              f"{spread([a / b for a, b in zip(e, g)]):>19} "
              f"{(spread([a / b for a, b in zip(e, n)]) if n else '-'):>19}")
    print(f"first (uncached) {r['image_mib']} MiB download, filling the cache (one run; --only first for rounds and "
          f"CPU-seconds): edge {r['first_download_s_edge']:.2f} s, Glance's own cache {r['first_download_s_glance']:.2f} s")
    print(f"edge peak RSS: {r['edge_peak_rss_mib_before']:.1f} MiB before, "
          f"{r['edge_peak_rss_mib_8_downloads']:.1f} MiB after 8 concurrent {r['image_mib']} MiB downloads")
    print(f"(written to {out})")


if __name__ == "__main__":
    main()

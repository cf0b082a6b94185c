"""See scripts/profile-swift. Instructions per request, not requests per second: the
counts are repeatable on a machine that other work keeps busy, where wall-clock load
figures are not."""

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))
sys.path.insert(0, str(ROOT / "scripts"))
import peers  # noqa: E402
from load_swift import fast_backend, NGINX_HEAD  # noqa: E402


def exchange(sock: socket.socket, request: bytes, head: bool) -> tuple[int, bool]:
    """Sends one request on a kept-alive connection and reads its whole answer: its
    status and whether the server closes the connection after it."""
    sock.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer's head")
        buf += chunk
    header, _, rest = buf.partition(b"\r\n\r\n")
    lines = header.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if head or status in (204, 304):
        length = 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        rest += chunk
    return status, close


def load(port: int, path: str, token: str, method: str, n: int, connections: int) -> None:
    """Exactly `n` HTTP/1.1 keep-alive requests (as wrk sends them) over `connections`."""
    request = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"X-Auth-Token: {token}\r\n\r\n").encode()
    errors = []

    def worker(count: int) -> None:
        # Reconnects when the server closes (nginx does after 1,000 requests), as wrk.
        s = None
        try:
            for _ in range(count):
                if s is None:
                    s = socket.create_connection(("127.0.0.1", port))
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                status, close = exchange(s, request, method == "HEAD")
                if status != 200:
                    raise RuntimeError(f"{method} {path}: {status}")
                if close:
                    s.close()
                    s = None
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            if s is not None:
                s.close()

    shares = [n // connections + (1 if i < n % connections else 0) for i in range(connections)]
    threads = [threading.Thread(target=worker, args=(c,)) for c in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)


def total_ir(out: Path) -> int:
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"no totals in {out}")


def dumps(outdir: Path, pid: int) -> list[Path]:
    """The callgrind dumps of `pid`, oldest first (`callgrind.<pid>.<n>`)."""
    files = [p for p in outdir.glob(f"callgrind.{pid}.*") if p.suffix.lstrip(".").isdigit()]
    return sorted(files, key=lambda p: int(p.suffix.lstrip(".")))


def profile(name, argv, port, path, token, outdir, args, ready, methods=("GET", "HEAD"), env=None):
    """Runs `argv` (a server listening on `port`) under callgrind and counts the
    instructions of exactly `args.requests` requests of each of `methods` (GETs, then as
    many HEADs by default)."""
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={outdir}/callgrind.%p",
          "--collect-jumps=no", f"--dump-instr={'yes' if args.dump_instr else 'no'}"]
    proc = peers.spawn(name, vg + argv, outdir / f"{name}.log", env=env)
    try:
        peers.wait_http(ready, timeout=120)
        token = token() if callable(token) else token
        # Warm up (logins, the locator's cache, pooled connections), then count from zero.
        for method in methods:
            load(port, path, token, method, 50, args.connections)
        control(proc.pid, "--zero")
        figures = {}
        for method in methods:
            started = time.monotonic()
            load(port, path, token, method, args.requests, args.connections)
            elapsed = time.monotonic() - started
            control(proc.pid, "--dump")
            # A dump resets the counters: each one holds exactly one batch.
            out = dumps(outdir, proc.pid)[-1]
            final = outdir / f"{name}-{method.lower()}.callgrind"
            shutil.copy(out, final)
            figures[method] = (total_ir(final) / args.requests, elapsed, final)
        return figures
    finally:
        proc.stop()


def callgrind_args(ap: argparse.ArgumentParser, name: str, requests_help: str) -> None:
    """The options every profile takes: how many requests over how many connections,
    where the callgrind files go (.run/NAME), and what is shown."""
    ap.add_argument("--requests", type=int, default=2000, help=requests_help)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / ".run" / name))
    ap.add_argument("--dump-instr", action="store_true", help="per-instruction costs (for objdump)")
    ap.add_argument("--top", type=int, default=25, help="functions shown")


def fresh_outdir(args) -> Path:
    """`args.out`, emptied."""
    outdir = Path(args.out)
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    return outdir


def main():
    ap = argparse.ArgumentParser()
    callgrind_args(ap, "profile-swift", "requests per method")
    ap.add_argument("--binary", default=str(peers.built("swift-federation-proxy", "release")))
    ap.add_argument("--nginx", action="store_true", help="also count nginx as a reverse proxy (1 worker)")
    ap.add_argument("--floor", nargs="?", const=str(peers.built("examples/floor_proxy", "release")),
                    help="also count the floor: stackfed-http's example floor_proxy (the same libraries, no "
                         "federation work; build it with `cargo build --release -p stackfed-http --example "
                         "floor_proxy`), at this path")
    ap.add_argument("--floor-variants", action="store_true",
                    help="with --floor, also count it with --current-thread and with --no-pool")
    ap.add_argument("--floor-options", action="store_true",
                    help="with --floor, also count it with the hyper options the proxy sets for Swift: "
                         "--swift-slots (201 request header slots), --keep-case (header case kept), both")
    args = ap.parse_args()
    outdir = fresh_outdir(args)
    base = Path(tempfile.mkdtemp(prefix="stackfed-profile-swift-"))
    fast = None
    results = {}
    try:
        fast, fport = fast_backend(base / "fast")
        peers.wait_http(f"http://127.0.0.1:{fport}/v1/AUTH_test/bench/small", timeout=10)
        fed = peers.FederationProxy(base / "proxy", [SimpleNamespace(name="fast", endpoint=f"http://127.0.0.1:{fport}")])
        conf = fed.write_config()
        pport = peers.free_port()

        def login():
            h = requests.get(f"http://127.0.0.1:{pport}/auth/v1.0",
                             headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"}).headers
            return h["X-Auth-Token"]

        results["proxy"] = profile(
            "proxy", [args.binary, "--config", str(conf), "--listen", f"127.0.0.1:{pport}"],
            pport, "/v1/AUTH_test/bench/small", login, outdir, args, f"http://127.0.0.1:{pport}/healthcheck")
        if args.nginx:
            d = base / "nginx"
            d.mkdir()
            nport = peers.free_port()
            conf = d / "nginx.conf"
            conf.write_text("master_process off;\n" + NGINX_HEAD.format(d=d) + f"""
  upstream backend {{ server 127.0.0.1:{fport}; keepalive 32; }}
  server {{ listen 127.0.0.1:{nport};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
}}
""")
            results["nginx"] = profile(
                "nginx", [shutil.which("nginx"), "-c", str(conf)], nport, "/v1/AUTH_test/bench/small", "x",
                outdir, args, f"http://127.0.0.1:{nport}/v1/AUTH_test/bench/small")
        if args.floor:
            variants = [("floor", [])]
            if args.floor_variants:
                variants += [("floor-1thread", ["--current-thread"]), ("floor-nopool", ["--no-pool"])]
            if args.floor_options:
                variants += [("floor-slots", ["--swift-slots"]), ("floor-case", ["--keep-case"]),
                             ("floor-both", ["--swift-slots", "--keep-case"])]
            for name, extra in variants:
                port = peers.free_port()
                results[name] = profile(
                    name, [args.floor, f"127.0.0.1:{port}", f"127.0.0.1:{fport}", *extra], port,
                    "/v1/AUTH_test/bench/small", "x", outdir, args,
                    f"http://127.0.0.1:{port}/v1/AUTH_test/bench/small")
    finally:
        if fast:
            fast.stop()
        shutil.rmtree(base, ignore_errors=True)

    print(f"\ninstructions per request (callgrind, user space only; {args.requests} keep-alive requests per "
          f"method over {args.connections} connection(s), 1 KiB object, fast fake backend)")
    for who, figures in results.items():
        for method, (ir, elapsed, final) in figures.items():
            print(f"  {who:13} {method:5} {ir:10,.0f}   ({elapsed:.1f} s under valgrind; {final})")
    for peer in ("nginx", "floor"):
        if peer in results:
            for method in ("GET", "HEAD"):
                print(f"  proxy / {peer} {method}: {results['proxy'][method][0] / results[peer][method][0]:.2f}")
    for method, (_, _, final) in results["proxy"].items():
        print_top(f"proxy {method}", final, args.top)


def print_top(title: str, final: Path, top: int, inclusive: bool = True) -> None:
    """The `top` functions of a callgrind file, by inclusive or by self cost."""
    kind = "yes" if inclusive else "no"
    print(f"\n{title}, {'inclusive' if inclusive else 'self'}, top {top} "
          f"(callgrind_annotate --inclusive={kind} {final}):")
    ann = subprocess.run(["callgrind_annotate", f"--inclusive={kind}", "--threshold=100", str(final)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    start = next((i for i, line in enumerate(ann) if "file:function" in line), 0)
    lines = ann[start + 2:]
    if not inclusive:
        # Without --separate-threads, callgrind books the threads' start-up frames (the
        # runtime's worker loop) at nearly all of the total even by self cost: skipped.
        lines = [x for x in lines if "%)" in x and float(x.split("(")[1].split("%")[0]) < 50]
    for line in lines[:top]:
        print("  " + line[:160])


if __name__ == "__main__":
    main()

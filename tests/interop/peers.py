"""Start and stop real peers on loopback: single-node OpenStack Swift clusters,
memcached, and our own Rust servers.

Every process is started in its own session and stopped by its PID (its process
group), also when a test fails. Nothing here touches /etc: each Swift cluster
lives in its own directory, and each of its servers starts through a wrapper
that points Swift at that directory before the server's code runs.
"""

from __future__ import annotations

import json
import re
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"

# The users every cluster knows (tempauth): account, user, key.
USERS = [("test", "tester", "testing"), ("test2", "tester2", "testing2"),
         ("fedreg", "registry", "regkey"), ("fedlist", "lister", "listing")]
# An account only test_swift_federation.py's listing tests write to: they compare whole
# account listings and usage, which other modules' containers (test2 is used by several)
# would change, depending on the order the modules run in.
LISTING_USER, LISTING_KEY = "fedlist:lister", "listing"
# The account the Swift-backed attribute store keeps its registry in.
REGISTRY_USER, REGISTRY_KEY = "fedreg:registry", "regkey"
# More users every cluster knows, as Swift's functional suite (test/functional, run by
# scripts/swift-functests) needs them: account, user, key, tempauth groups. tester3 has no
# admin role on `test`; tester5 is the service user (the SERVICE_ prefix requires the
# `service` group); admin is the reseller admin.
EXTRA_USERS = [("test", "tester3", "testing3", ""),
               ("test5", "tester5", "testing5", "service"),
               ("admin", "admin", "admin", ".admin .reseller_admin")]
# tempauth's reseller prefixes: AUTH_ accounts as before, plus the SERVICE_ prefix that
# service tokens (X-Service-Token) are checked against.
RESELLER_PREFIX = "AUTH, SERVICE"
SERVICE_REQUIRE_GROUP = "service"
# The proxy pipeline of a cluster, and the one of Swift's SAIO (every middleware the
# functional suite exercises; selected with SwiftCluster(full_pipeline=True)).
PIPELINE = ("catch_errors gatekeeper healthcheck proxy-logging cache listing_formats tempauth "
            "copy dlo slo versioned_writes symlink proxy-logging proxy-server")
FULL_PIPELINE = ("catch_errors gatekeeper healthcheck proxy-logging cache etag-quoter listing_formats "
                 "bulk tempurl ratelimit crossdomain tempauth staticweb copy container-quotas "
                 "account-quotas slo dlo versioned_writes symlink proxy-logging proxy-server")

WRAPPER = r"""
import importlib, sys
swift_dir, module = sys.argv[1], sys.argv[2]
from swift.common import utils
utils.set_swift_dir(swift_dir)
from swift.common import constraints, storage_policy
storage_policy.reload_storage_policies()
constraints.reload_constraints()
sys.argv = [module] + sys.argv[3:]
sys.exit(importlib.import_module(module).main())
"""


# Ports handed out by free_port() in this process (a port is free when handed out, and
# stays taken until the server that got it binds it: never hand it out twice).
_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def mount_tmpfs(path: Path, mib: int) -> None:
    """Mounts a tmpfs of `mib` MiB on `path` (created if missing): a real filesystem of
    a known size, for capacity and disk-full tests (root only). `unmount` undoes it."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)],
                   check=True, capture_output=True)


def resize_tmpfs(path: Path, mib: int) -> None:
    """Gives a tmpfs mounted by `mount_tmpfs` a new size, its files kept."""
    subprocess.run(["mount", "-o", f"remount,size={mib}m", str(path)], check=True, capture_output=True)


def unmount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=False, capture_output=True)


def free_port() -> int:
    """A loopback port nothing listens on, for a server about to start.

    Chosen at random BELOW the kernel's ephemeral range (32768-60999 here): a port from
    bind(0) is an ephemeral one, which the source port of any outgoing connection on the
    machine (thousands per test run, and the other suites running beside this one) may
    take in the moment between this check and the server's bind; a port below the range
    is never given to an outgoing connection. Checked by binding it without SO_REUSEADDR
    (so not even a TIME_WAIT connection holds it), and never handed out twice here."""
    low = _ephemeral_low()
    rnd = random.SystemRandom()
    for _ in range(200):
        port = rnd.randrange(20000, low) if low > 21000 else 0
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free loopback port found")


def wait_http(url: str, timeout: float = 30.0, ok=(200,), headers=None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status in ok:
                    return
                last = r.status
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return
            last = e.code
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout}s (last: {last})")


@dataclass
class Proc:
    """One process we started."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(5)


def spawn(name: str, argv: list[str], log: Path, env=None, cwd=None) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")
    popen = subprocess.Popen(
        argv,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    out.close()
    return Proc(name, popen, log)


def _conf(path: Path, text: str) -> None:
    path.write_text(text.lstrip())


@dataclass
class SwiftCluster:
    """A single-node Swift cluster (proxy with tempauth, account, container and
    object servers, container updater, its own memcached) in `base`."""

    name: str
    base: Path
    policy: str = "standard"
    # When > 0, the cluster's one device is a tmpfs of this many MiB (a real mount, so
    # recon reports its size and use); unmounted by teardown().
    device_mib: int = 0
    # The SAIO pipeline (bulk, tempurl, staticweb, quotas, etag-quoter, crossdomain,
    # ratelimit, object versioning) instead of the smaller default one.
    full_pipeline: bool = False
    # Swift's bulk middleware (bulk delete and bulk upload) in the default pipeline, where
    # Swift's sample proxy-server.conf has it (the migration mover empties containers
    # with bulk deletes when /info advertises them).
    bulk: bool = False
    # More tempauth users (account, user, key, groups); accounts of `.admin` users are
    # created at start.
    extra_users: list[tuple[str, str, str, str]] = field(default_factory=list)
    # More storage policies (names; indexes 1, 2, ...), each with its own object ring on
    # the same device.
    extra_policies: list[str] = field(default_factory=list)
    # False: object servers do not preallocate (disable_fallocate), so a PUT announcing a
    # body larger than the device is not refused with 507 (which error-limits the
    # cluster's only node for a minute); Swift's testFileSizeLimit announces 4 x 5 GiB.
    fallocate: bool = True
    # Seconds between the container updater's passes (it carries containers' object
    # counts and bytes to the account). Each pass takes every container database's lock
    # to commit its pending updates, and a container HEAD or GET that cannot take that
    # lock within 0.1 s (Swift's container server: pending_timeout=0.1,
    # stale_reads_ok=True) answers from the database without the pending updates: an
    # object count one behind a write acknowledged a moment before. 1 s suits the
    # interop tests that read account usage; Swift's functional suite reads container
    # counts right after writes and no account usage, and under CI load a 1 s updater
    # made it fail now and then on one cluster and through the proxy alike
    # (test_versioned_writes "4 != 3": the HEAD waited 128 ms, the listing 70 ms later
    # showed the fourth object).
    updater_interval: int = 1
    # A Keystone (peers.Keystone, started): the proxy pipeline then runs authtoken +
    # keystoneauth instead of tempauth (accounts AUTH_<project id>, no /auth/v1.0).
    keystone: "Keystone | None" = None
    procs: list[Proc] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    mounted: bool = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy']}"

    @property
    def auth_url(self) -> str:
        return f"{self.endpoint}/auth/v1.0"

    @property
    def recon_endpoint(self) -> str:
        """The object server, which runs Swift's recon middleware."""
        return f"http://127.0.0.1:{self.ports['object']}"

    def write_config(self) -> None:
        if self.base.exists():
            shutil.rmtree(self.base)
        dev = self.base / "srv" / "d1"
        dev.mkdir(parents=True)
        if self.device_mib:
            mount_tmpfs(dev, self.device_mib)
            self.mounted = True
        for k in ("proxy", "account", "container", "object", "memcached"):
            self.ports[k] = free_port()
        d = self.base
        _conf(d / "swift.conf", f"""
[swift-hash]
swift_hash_path_suffix = stackfed-{self.name}-suffix
swift_hash_path_prefix = stackfed-{self.name}-prefix

[storage-policy:0]
name = {self.policy}
default = yes
""" + "".join(f"""
[storage-policy:{i}]
name = {name}
""" for i, name in enumerate(self.extra_policies, start=1)))
        common = f"""
[DEFAULT]
bind_ip = 127.0.0.1
workers = 0
user = root
swift_dir = {d}
devices = {d / "srv"}
mount_check = false
log_level = WARNING
"""
        users = "\n".join([f"user_{a}_{u} = {k} .admin" for a, u, k in USERS]
                          + [f"user_{a}_{u} = {k} {g}".rstrip()
                             for a, u, k, g in EXTRA_USERS + self.extra_users])
        pipeline = FULL_PIPELINE if self.full_pipeline else PIPELINE
        if self.bulk and not self.full_pipeline:
            pipeline = pipeline.replace(" listing_formats ", " listing_formats bulk ")
        if self.keystone:
            pipeline = pipeline.replace(" tempauth ", " authtoken keystoneauth ")
        ks = self.keystone
        keystone_filters = f"""
[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = {ks.auth_url}
auth_url = {ks.endpoint}
auth_type = password
username = swift
password = {ks.users["swift"].password}
project_name = service
user_domain_id = default
project_domain_id = default
delay_auth_decision = True
cache = swift.cache
include_service_catalog = False

[filter:keystoneauth]
use = egg:swift#keystoneauth
reseller_prefix = AUTH_
operator_roles = admin, member
reseller_admin_role = ResellerAdmin
project_reader_roles = reader
""" if ks else ""
        extra_filters = """
[filter:etag-quoter]
use = egg:swift#etag_quoter
enable_by_default = false
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
[filter:ratelimit]
use = egg:swift#ratelimit
[filter:crossdomain]
use = egg:swift#crossdomain
[filter:staticweb]
use = egg:swift#staticweb
[filter:container-quotas]
use = egg:swift#container_quotas
[filter:account-quotas]
use = egg:swift#account_quotas
""" if self.full_pipeline else ("""
[filter:bulk]
use = egg:swift#bulk
""" if self.bulk else "")
        _conf(d / "proxy-server.conf", f"""
{common}
bind_port = {self.ports['proxy']}
log_name = proxy-{self.name}

[pipeline:main]
pipeline = {pipeline}

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true
{"allow_open_expired = true" if self.full_pipeline else ""}

[filter:tempauth]
use = egg:swift#tempauth
token_life = 86400
reseller_prefix = {RESELLER_PREFIX}
SERVICE_require_group = {SERVICE_REQUIRE_GROUP}
{users}

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{self.ports['memcached']}

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:dlo]
use = egg:swift#dlo
[filter:slo]
use = egg:swift#slo
[filter:versioned_writes]
use = egg:swift#versioned_writes
allow_versioned_writes = true
allow_object_versioning = true
[filter:symlink]
use = egg:swift#symlink
{extra_filters}{keystone_filters}""")
        for kind, egg in (("account", "account"), ("container", "container"), ("object", "object")):
            _conf(d / f"{kind}-server.conf", f"""
{common}
bind_port = {self.ports[kind]}
log_name = {kind}-{self.name}
{"disable_fallocate = true" if not self.fallocate else ""}

[pipeline:main]
pipeline = healthcheck recon {kind}-server

[filter:recon]
use = egg:swift#recon
recon_cache_path = {d / "recon"}

[app:{kind}-server]
use = egg:swift#{egg}

[filter:healthcheck]
use = egg:swift#healthcheck

[{kind}-replicator]
[{kind}-auditor]
[account-reaper]
[container-updater]
interval = {self.updater_interval}
[object-updater]
interval = 1
""")
        builder = str(VENV_BIN / "swift-ring-builder")
        object_rings = [f"object-{i}" for i in range(1, len(self.extra_policies) + 1)]
        for ring in ("account", "container", "object", *object_rings):
            b = str(d / f"{ring}.builder")
            port = self.ports[ring.split("-")[0]]
            subprocess.run([builder, b, "create", "8", "1", "1"], check=True, capture_output=True)
            subprocess.run(
                [builder, b, "add", f"r1z1-127.0.0.1:{port}/d1", "100"],
                check=True, capture_output=True,
            )
            # rebalance exits 1 with a warning about balance on a 1-device ring.
            r = subprocess.run([builder, b, "rebalance"], capture_output=True)
            if r.returncode not in (0, 1):
                raise RuntimeError(f"ring {ring}: {r.stdout!r} {r.stderr!r}")

    def _server(self, module: str, conf: str, extra=()) -> Proc:
        argv = [str(VENV_BIN / "python"), "-c", WRAPPER, str(self.base), module,
                str(self.base / conf), "-v", *extra]
        tag = module.rsplit(".", 2)[-2]
        return spawn(f"{self.name}-{tag}", argv, self.base / "log" / f"{tag}.log")

    def start(self) -> None:
        """Writes the configuration, starts every process, waits until the proxy
        authenticates, and creates the accounts."""
        try:
            self.write_config()
            self.start_processes()
            if self.keystone:
                return  # accounts are created on first use (account_autocreate)
            admins = [(a, u, k, ".admin") for a, u, k in USERS]
            for a, u, k, g in admins + self.extra_users:
                if ".admin" not in g.split():
                    continue
                url, token = self.authenticate(f"{a}:{u}", k)
                req = urllib.request.Request(url, method="POST", headers={"X-Auth-Token": token})
                with urllib.request.urlopen(req, timeout=10) as r:
                    assert r.status == 204, r.status
        except BaseException:
            self.teardown()
            raise

    def start_processes(self) -> None:
        """Starts memcached and the servers on the configured ports (data kept)."""
        mc = shutil.which("memcached")
        if not mc:
            raise RuntimeError("memcached is not installed (apt-get install -y memcached)")
        self.procs.append(spawn(
            f"{self.name}-memcached",
            [mc, "-l", "127.0.0.1", "-p", str(self.ports["memcached"]), "-U", "0", "-u", "root", "-m", "32"],
            self.base / "log" / "memcached.log",
        ))
        try:
            for module, conf in (
                ("swift.account.server", "account-server.conf"),
                ("swift.container.server", "container-server.conf"),
                ("swift.obj.server", "object-server.conf"),
                ("swift.proxy.server", "proxy-server.conf"),
            ):
                self.procs.append(self._server(module, conf))
            self.procs.append(self._server("swift.container.updater", "container-server.conf"))
            for k in ("account", "container", "object", "proxy"):
                wait_http(f"http://127.0.0.1:{self.ports[k]}/healthcheck", timeout=60)
        except BaseException:
            self.stop()
            raise

    def restart(self) -> None:
        """Starts a stopped cluster again, with its data."""
        self.start_processes()

    def restart_memcached(self) -> None:
        """Restarts the cluster's memcached on the same port: tempauth forgets every
        token it issued (as when tokens expire)."""
        mc = next(p for p in self.procs if p.name.endswith("-memcached"))
        mc.stop()
        fresh = spawn(mc.name, mc.popen.args, mc.log)
        self.procs[self.procs.index(mc)] = fresh
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.ports["memcached"]), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("memcached did not come back")

    def authenticate(self, user: str, key: str) -> tuple[str, str]:
        req = urllib.request.Request(self.auth_url, headers={"X-Auth-User": user, "X-Auth-Key": key})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()

    def teardown(self) -> None:
        """Stops the cluster for good and unmounts its device."""
        self.stop()
        if self.mounted:
            unmount(self.base / "srv" / "d1")
            self.mounted = False

    def logs(self) -> str:
        out = []
        for f in sorted((self.base / "log").glob("*.log")):
            out.append(f"--- {f}\n" + f.read_text(errors="replace")[-4000:])
        return "\n".join(out)


def start_clusters(base: Path, names: list[str], device_mib: int = 0,
                   full_pipeline: bool = False, keystone: "Keystone | None" = None,
                   bulk: bool = False) -> list[SwiftCluster]:
    clusters: list[SwiftCluster] = []
    try:
        for n in names:
            c = SwiftCluster(n, base / n, device_mib=device_mib, full_pipeline=full_pipeline,
                             keystone=keystone, bulk=bulk)
            clusters.append(c)
            c.start()
    except BaseException:
        for c in clusters:
            c.teardown()
        raise
    return clusters


if __name__ == "__main__":
    # Manual check: python tests/interop/peers.py DIR → starts two clusters, prints
    # their endpoints, stops them on Ctrl-C.
    base = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / ".run" / "swift")
    cs = start_clusters(base, ["east", "west"])
    print(json.dumps({c.name: c.endpoint for c in cs}))
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        for c in cs:
            c.stop()


def built(name: str, profile: str = "debug") -> Path:
    """Where cargo puts one of the workspace's binaries: under $CARGO_TARGET_DIR when
    set (relative to the workspace root, where the scripts run cargo), else target/."""
    target = os.environ.get("CARGO_TARGET_DIR")
    return (ROOT / target if target else ROOT / "target") / profile / name


def cargo_bin(name: str) -> Path:
    """Builds one of the workspace's binaries (debug profile) and returns its path."""
    subprocess.run(
        ["cargo", "build", "--quiet", "--locked", "--bin", name],
        cwd=ROOT, check=True,
    )
    path = built(name)
    if not path.exists():
        raise RuntimeError(f"{path} was not built")
    return path


@dataclass
class FederationProxy:
    """Our swift-federation-proxy, in front of some clusters."""

    base: Path
    clusters: list[SwiftCluster]
    policy_toml: str = (
        'kind = "first-of"\n'
        'policies = [{ kind = "pin" }, { kind = "service-level", then = { kind = "rendezvous" } }]\n'
    )
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    # "sqlite", "memory", or an inline TOML table (such as a Swift store's).
    store: str = "sqlite"
    # Refresh each cluster's capacity and usage from its object server's recon.
    recon: bool = False
    # Extra top-level configuration lines.
    extra_toml: str = ""
    # A cluster's configured state ("draining"); online when absent.
    states: dict[str, str] = field(default_factory=dict)
    # The `auth` value (TOML): tempauth, or a Keystone table (see keystone_auth_toml).
    auth_toml: str = '"tempauth"'
    # Extra environment for the proxy process (secrets).
    env: dict[str, str] = field(default_factory=dict)
    # More [[clusters]] tables, as TOML (clusters that are not SwiftCluster objects).
    extra_clusters: str = ""
    # A cluster's configured (capacity_bytes, used_bytes); 1 TB and 0 when absent.
    usage: dict[str, tuple[int, int]] = field(default_factory=dict)
    proc: Proc | None = None
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.endpoint}/auth/v1.0"

    def write_config(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True)
        lines = [f"auth = {self.auth_toml}", self.extra_toml]
        if self.store == "sqlite":
            lines.append(f'store = {{ kind = "sqlite", path = "{self.base / "federation.db"}" }}')
        elif self.store == "memory":
            lines.append('store = { kind = "memory" }')
        else:
            lines.append(f"store = {self.store}")
        for c in self.clusters:
            capacity, used = self.usage.get(c.name, (1_000_000_000_000, 0))
            lines += ["", "[[clusters]]", f'id = "{c.name}"', f'endpoint = "{c.endpoint}"',
                      f"capacity_bytes = {capacity}", f"used_bytes = {used}"]
            if self.recon:
                lines.append(f'recon_endpoints = ["{c.recon_endpoint}"]')
            if c.name in self.states:
                lines.append(f'state = "{self.states[c.name]}"')
            labels = self.labels.get(c.name, {})
            if labels:
                inner = ", ".join(f'{k} = "{v}"' for k, v in labels.items())
                lines.append(f"labels = {{ {inner} }}")
        lines += ["", self.extra_clusters, "", "[policy]", self.policy_toml]
        path = self.base / "proxy.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, binary: Path) -> None:
        conf = self.write_config()
        for attempt in range(3):
            self.port = free_port()
            self.proc = spawn(
                "federation-proxy",
                [str(binary), "--config", str(conf), "--listen", f"127.0.0.1:{self.port}"],
                self.base / "proxy.log",
                env={"RUST_LOG": os.environ.get("RUST_LOG", "info"), **self.env},
            )
            try:
                wait_http(f"{self.endpoint}/healthcheck", timeout=30)
            except BaseException:
                died = not self.proc.alive()
                self.stop()
                # Another process took the port before the proxy bound it: it exited;
                # try another port (the log says why).
                if died and attempt < 2 and "in use" in self.log().lower():
                    continue
                raise
            if self.proc.alive():
                return
            # Something else answered on the port while the proxy failed to bind it.
            self.stop()
        raise RuntimeError(f"the proxy did not start on a free port: {self.log()}")

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None

    def log(self) -> str:
        p = self.base / "proxy.log"
        return p.read_text(errors="replace")[-6000:] if p.exists() else ""


@dataclass
class GlanceCentral:
    """A real Glance API (from the venv) under gunicorn: SQLite database, file store,
    no Keystone (every request is an admin without a project). Its access log counts
    the requests it served."""

    base: Path
    port: int = 0
    proc: Proc | None = None
    workers: int = 2
    # Trusted headers: Glance's context middleware without keystonemiddleware; every
    # request says who it is (X-Identity-Status, X-Project-Id, X-Roles) and Glance's
    # per-project rules apply. Otherwise no-auth: everybody is an admin.
    trusted: bool = False
    # Glance's own image cache (the `caching` pipeline), for comparisons.
    own_cache: bool = False
    # A Keystone (peers.Keystone, started): paste flavor `keystone`, authtoken with the
    # `glance` service user, per-project rules from the validated tokens, and Glance's
    # secure-RBAC defaults as a real cloud runs them (`enforce_new_defaults`: a `reader`
    # reads and gets 403 on writes; the legacy rules let any project member write).
    keystone: "Keystone | None" = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.base / "access.log"

    def write_config(self) -> Path:
        conf = self.base / "etc"
        if not conf.exists():
            conf.mkdir(parents=True)
            for d in ("images", "staging", "tasks"):
                (self.base / d).mkdir(exist_ok=True)
            paste = Path(sys.prefix) / "etc" / "glance" / "glance-api-paste.ini"
            if not paste.exists():
                paste = ROOT / ".venv" / "etc" / "glance" / "glance-api-paste.ini"
            text = paste.read_text()
            if self.trusted:
                text = text.replace(
                    "[composite:api]\npaste.composite_factory = glance.api:pipeline_factory\n",
                    "[composite:api]\npaste.composite_factory = glance.api:pipeline_factory\n"
                    "trusted = cors http_proxy_to_wsgi versionnegotiation osprofiler context rootapp\n",
                ) + ("\n[composite:glance-api-trusted]\npaste.composite_factory = glance.api:root_app_factory\n"
                     "/: api\n/healthcheck: healthcheck\n")
            (conf / "glance-api-paste.ini").write_text(text)
            admin_rule = "role:admin" if self.trusted or self.keystone else "@"
            (conf / "policy.yaml").write_text(f'"context_is_admin": "{admin_rule}"\n')
        if not self.port:
            self.port = free_port()
        _conf(conf / "glance-api.conf", f"""
[DEFAULT]
enabled_backends = fs:file
worker_self_reference_url = http://127.0.0.1:{self.port}
image_size_cap = 10737418240
log_file = {self.base / "glance-api.log"}
debug = false
{f"image_cache_dir = {self.base / 'glance-cache'}" if self.own_cache else ""}

[database]
connection = sqlite:///{self.base / "glance.sqlite"}

[glance_store]
default_backend = fs

[fs]
filesystem_store_datadir = {self.base / "images"}

[os_glance_staging_store]
filesystem_store_datadir = {self.base / "staging"}

[os_glance_tasks_store]
filesystem_store_datadir = {self.base / "tasks"}

[oslo_policy]
enforce_new_defaults = {"true" if self.keystone else "false"}
enforce_scope = false
policy_file = {conf / "policy.yaml"}

[paste_deploy]
config_file = {conf / "glance-api-paste.ini"}
{"flavor = trusted" if self.trusted else ("flavor = keystone" if self.keystone else ("flavor = caching" if self.own_cache else ""))}
{self._authtoken()}
""")
        return conf

    def _authtoken(self) -> str:
        if not self.keystone:
            return ""
        ks = self.keystone
        return f"""
[keystone_authtoken]
www_authenticate_uri = {ks.auth_url}
auth_url = {ks.endpoint}
auth_type = password
project_domain_id = default
user_domain_id = default
project_name = service
username = glance
password = {ks.users["glance"].password}
"""

    def start(self) -> None:
        conf = self.write_config()
        env = {"OS_GLANCE_CONFIG_DIR": str(conf)}
        db = self.base / "glance.sqlite"
        if not db.exists():
            r = subprocess.run(
                [str(VENV_BIN / "glance-manage"), "--config-dir", str(conf), "db_sync"],
                capture_output=True, env={**os.environ, **env},
            )
            if r.returncode != 0:
                raise RuntimeError(f"glance-manage db_sync failed: {r.stderr.decode()[-2000:]}")
        self.proc = spawn(
            "glance-api",
            [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--threads", "4", "--timeout", "300",
             "--access-logfile", str(self.access_log),
             # gunicorn 27 otherwise opens one control socket path for every master
             # (/root/.gunicorn/gunicorn.ctl): several Glances at once would share it.
             "--no-control-socket", "glance.wsgi.api:application"],
            self.base / "gunicorn.log", env=env,
        )
        try:
            wait_http(f"{self.endpoint}/versions", timeout=60)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None

    def requests_for(self, path_part: str) -> int:
        """How many requests whose line contains `path_part` the access log shows."""
        if not self.access_log.exists():
            return 0
        return sum(path_part in line for line in self.access_log.read_text().splitlines())

    def logs(self) -> str:
        out = []
        for f in ("gunicorn.log", "glance-api.log"):
            p = self.base / f
            if p.exists():
                out.append(f"--- {p}\n" + p.read_text(errors="replace")[-4000:])
        return "\n".join(out)


@dataclass
class GlanceEdge:
    """Our glance-edge-cache, in front of a central Glance."""

    base: Path
    central_url: str
    freshness_seconds: float = 0.0
    identity: str = "no-auth"
    max_cache_bytes: int | None = None
    extra_toml: str = ""
    proc: Proc | None = None
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cache_dir(self) -> Path:
        return self.base / "cache"

    def write_config(self) -> Path:
        """Writes the edge's configuration file (choosing a port if none is set)."""
        self.base.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        conf = self.base / "edge.toml"
        conf.write_text(
            f'listen = "127.0.0.1:{self.port}"\n'
            f'central_url = "{self.central_url}"\n'
            f'cache_dir = "{self.cache_dir}"\n'
            f"freshness_seconds = {self.freshness_seconds}\n"
            f'identity = "{self.identity}"\n'
            "connect_timeout_seconds = 1\n"
            + (f"max_cache_bytes = {self.max_cache_bytes}\n" if self.max_cache_bytes else "")
            + self.extra_toml
        )
        return conf

    def start(self, binary: Path) -> None:
        conf = self.write_config()
        self.proc = spawn("glance-edge", [str(binary), "--config", str(conf)], self.base / "edge.log",
                          env={"RUST_LOG": os.environ.get("RUST_LOG", "info")})
        try:
            wait_http(f"{self.endpoint}/healthcheck", timeout=30)
        except BaseException:
            self.stop()
            raise

    def kill9(self) -> None:
        if self.proc:
            self.proc.stop(sig=signal.SIGKILL)
            self.proc = None

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None

    def log(self) -> str:
        p = self.base / "edge.log"
        return p.read_text(errors="replace")[-6000:] if p.exists() else ""


@dataclass
class KeystoneUser:
    """A user the Keystone peer creates: its password, and its roles per project."""

    name: str
    password: str
    roles: dict[str, list[str]]  # project name -> role names
    id: str = ""


# The identities the Keystone suites use. `alpha` and `beta` are two tenant projects with
# members; `rita` only reads alpha; `admin` (made by keystone-manage bootstrap) is an admin
# of the `admin` project and here also of alpha. The `service` project holds the service
# users: Swift's and Glance's authtoken (roles service + admin, as token validation needs
# `service`), the federation proxy's own user (`stackfed`, ResellerAdmin: it reaches every
# AUTH_ account for its registry, probes and moves) and the edge's (`stackfed-edge`).
KEYSTONE_PROJECTS = ["alpha", "beta", "service"]
KEYSTONE_USERS = [
    KeystoneUser("alice", "alice-pw", {"alpha": ["member"]}),
    KeystoneUser("bob", "bob-pw", {"beta": ["member"]}),
    KeystoneUser("rita", "rita-pw", {"alpha": ["reader"]}),
    KeystoneUser("swift", "swift-pw", {"service": ["service", "admin"]}),
    KeystoneUser("glance", "glance-pw", {"service": ["service", "admin"]}),
    KeystoneUser("stackfed", "stackfed-pw", {"service": ["service", "member", "ResellerAdmin"]}),
    KeystoneUser("stackfed-edge", "stackfed-edge-pw", {"service": ["service", "member"]}),
]
KEYSTONE_EXTRA_ROLES = ["service", "ResellerAdmin"]


def _http_json(method: str, url: str, body=None, token: str | None = None,
               timeout: float = 30.0) -> tuple[dict, dict]:
    """One JSON request; returns (response headers, parsed body or {})."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
        return dict(r.headers), (json.loads(raw) if raw else {})


@dataclass
class Keystone:
    """A real Keystone (keystone 30 from the venv) under gunicorn on a free loopback port:
    SQLite (WAL) database, Fernet tokens, `keystone-manage bootstrap` (admin user and
    project, RegionOne, identity endpoint), then the projects, roles and users of
    `KEYSTONE_PROJECTS` / `KEYSTONE_USERS` and any catalog endpoints added with
    `add_endpoint` (before or after start).

    Attributes for tests: `auth_url` (…/v3), `project_ids` (name -> id), `users`
    (name -> KeystoneUser with id), `admin_password`; helpers `token(user, project)`,
    `authenticate(...)` (token and catalog), `os_env(user, project)` for CLIs."""

    base: Path
    port: int = 0
    region: str = "RegionOne"
    admin_password: str = "admin-pw"
    projects: list[str] = field(default_factory=lambda: list(KEYSTONE_PROJECTS))
    user_specs: list[KeystoneUser] = field(default_factory=lambda: [
        KeystoneUser(u.name, u.password, dict(u.roles)) for u in KEYSTONE_USERS])
    # bcrypt rounds: 4 (the least) keeps every password login fast in tests.
    password_hash_rounds: int = 4
    token_expiration: int = 3600
    # One worker: its in-process cache then never serves stale role assignments.
    workers: int = 1
    project_ids: dict[str, str] = field(default_factory=dict)
    users: dict[str, KeystoneUser] = field(default_factory=dict)
    # Another (started) Keystone this one replicates, as distributed clouds run one
    # Keystone per site, synchronised: its database and Fernet and credential keys are
    # copied at start (so both issue and validate the same tokens for the same users,
    # projects and catalog), then the two run apart. No provisioning of its own.
    replica_of: "Keystone | None" = None
    proc: Proc | None = None
    _admin_token: str = ""
    _pending_endpoints: list = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.endpoint}/v3"

    def write_config(self) -> Path:
        conf = self.base / "etc"
        conf.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        _conf(conf / "keystone.conf", f"""
[DEFAULT]
log_file = {self.base / "keystone.log"}
debug = false

[database]
connection = sqlite:///{self.base / "keystone.sqlite"}

[token]
provider = fernet
expiration = {self.token_expiration}

[fernet_tokens]
key_repository = {self.base / "fernet-keys"}

[fernet_receipts]
key_repository = {self.base / "fernet-keys"}

[credential]
key_repository = {self.base / "credential-keys"}

[identity]
password_hash_algorithm = bcrypt
password_hash_rounds = {self.password_hash_rounds}

[cache]
enabled = true
backend = oslo_cache.dict
""")
        return conf

    def _manage(self, conf: Path, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(VENV_BIN / "keystone-manage"), "--config-dir", str(conf), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "OS_KEYSTONE_CONFIG_DIR": str(conf)},
        )

    @staticmethod
    def _wait(p: subprocess.Popen, what: str) -> None:
        out, _ = p.communicate(timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"keystone-manage {what} failed: {out.decode(errors='replace')[-2000:]}")

    def start(self) -> None:
        """Sets up the database and keys, bootstraps, starts gunicorn, waits until Keystone
        answers, then creates the projects, roles, users and endpoints."""
        conf = self.write_config()
        try:
            if self.replica_of and not (self.base / "keystone.sqlite").exists():
                self._copy_from(self.replica_of)
            if not (self.base / "keystone.sqlite").exists():
                # The key repositories do not need the database: set them up meanwhile.
                keys = [self._manage(conf, "fernet_setup", "--keystone-user", "root",
                                     "--keystone-group", "root"),
                        self._manage(conf, "credential_setup", "--keystone-user", "root",
                                     "--keystone-group", "root")]
                self._wait(self._manage(conf, "db_sync"), "db_sync")
                import sqlite3
                with sqlite3.connect(self.base / "keystone.sqlite") as db:
                    db.execute("PRAGMA journal_mode=WAL")
                for p, what in zip(keys, ("fernet_setup", "credential_setup")):
                    self._wait(p, what)
                self._wait(self._manage(
                    conf, "bootstrap", "--bootstrap-password", self.admin_password,
                    "--bootstrap-region-id", self.region,
                    "--bootstrap-admin-url", self.auth_url,
                    "--bootstrap-internal-url", self.auth_url,
                    "--bootstrap-public-url", self.auth_url), "bootstrap")
            self._serve(conf)
            if self.replica_of:
                self.project_ids = dict(self.replica_of.project_ids)
                self.users = dict(self.replica_of.users)
                list(map(lambda e: self._create_endpoint(*e), self._pending_endpoints))
                self._pending_endpoints.clear()
            else:
                self._provision()
        except BaseException:
            self.stop()
            raise

    def _serve(self, conf: Path) -> None:
        """Starts gunicorn on the database and keys as they are; waits until it answers."""
        # Keystone parses sys.argv with oslo.config when the app loads: hide gunicorn's.
        (self.base / "keystone_app.py").write_text(
            "import sys\nsys.argv = sys.argv[:1]\nfrom keystone.wsgi.api import application  # noqa\n")
        self.proc = spawn(
            "keystone",
            [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--threads", "8", "--timeout", "120",
             "--pythonpath", str(self.base), "--no-control-socket",
             "--access-logfile", str(self.base / "access.log"), "keystone_app:application"],
            self.base / "gunicorn.log", env={"OS_KEYSTONE_CONFIG_DIR": str(conf)},
        )
        wait_http(f"{self.auth_url}", timeout=120)

    def restart(self) -> None:
        """Starts a stopped Keystone again on its port, with its database and keys (users,
        tokens issued before and catalog unchanged)."""
        self.stop()
        try:
            self._serve(self.base / "etc")
        except BaseException:
            self.stop()
            raise

    def _copy_from(self, other: "Keystone") -> None:
        import sqlite3
        self.base.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(other.base / "keystone.sqlite") as src, \
                sqlite3.connect(self.base / "keystone.sqlite") as dst:
            src.backup(dst)
        for d in ("fernet-keys", "credential-keys"):
            shutil.copytree(other.base / d, self.base / d, dirs_exist_ok=True)

    def _admin(self, method: str, path: str, body=None) -> dict:
        if not self._admin_token:
            self._admin_token = self.token("admin", "admin")
        return _http_json(method, f"{self.auth_url}{path}", body, self._admin_token)[1]

    def _provision(self) -> None:
        # The database is new: create without looking first, and grant roles in parallel
        # (each admin call costs a token validation; on a loaded 2-core machine, seconds).
        from concurrent.futures import ThreadPoolExecutor
        self.users["admin"] = KeystoneUser("admin", self.admin_password, {"admin": ["admin"]})
        roles = {r["name"]: r["id"] for r in self._admin("GET", "/roles")["roles"]}
        with ThreadPoolExecutor(4) as pool:
            def project(name):
                return self._admin("POST", "/projects", {"project": {
                    "name": name, "domain_id": "default"}})["project"]["id"]

            def role(name):
                return self._admin("POST", "/roles", {"role": {"name": name}})["role"]["id"]

            def user(spec):
                return self._admin("POST", "/users", {"user": {
                    "name": spec.name, "password": spec.password, "domain_id": "default",
                    "enabled": True}})["user"]["id"]

            new_projects = [p for p in self.projects if p != "admin"]
            new_roles = [r for r in KEYSTONE_EXTRA_ROLES if r not in roles]
            listed = pool.submit(lambda: (self._admin("GET", "/projects")["projects"],
                                          self._admin("GET", "/users?name=admin")["users"]))
            pids = list(pool.map(project, new_projects))
            rids = list(pool.map(role, new_roles))
            uids = list(pool.map(user, self.user_specs))
            projects, admins = listed.result()
            self.project_ids.update({p["name"]: p["id"] for p in projects})
            self.project_ids.update(zip(new_projects, pids))
            roles.update(zip(new_roles, rids))
            self.users["admin"].id = admins[0]["id"]
            grants = []
            for spec, uid in zip(self.user_specs, uids):
                spec.id = uid
                self.users[spec.name] = spec
                grants += [(self.project_ids[p], uid, roles[r])
                           for p, names in spec.roles.items() for r in names]
            # The admin user also administers alpha (an admin of a tenant project).
            grants.append((self.project_ids["alpha"], self.users["admin"].id, roles["admin"]))
            self.users["admin"].roles["alpha"] = ["admin"]
            list(pool.map(lambda g: self._admin("PUT", f"/projects/{g[0]}/users/{g[1]}/roles/{g[2]}"),
                          grants))
            list(pool.map(lambda e: self._create_endpoint(*e), self._pending_endpoints))
        self._pending_endpoints.clear()

    def add_endpoint(self, service_type: str, name: str, url: str,
                     region: str | None = None) -> None:
        """Registers a catalog service (if new) and its public, internal and admin
        endpoints in this region (or `region`, created if new), e.g. ("object-store",
        "swift", "http://127.0.0.1:PORT/v1/AUTH_%(project_id)s"). Before start, kept for
        it."""
        if not self.proc:
            self._pending_endpoints.append((service_type, name, url, region))
        else:
            self._create_endpoint(service_type, name, url, region)

    def grant(self, user: str, project: str, role: str) -> None:
        """Gives `user` the role `role` in `project` (names; the role must exist)."""
        rid = self._admin("GET", f"/roles?name={role}")["roles"][0]["id"]
        self._admin("PUT", f"/projects/{self.project_ids[project]}/users/{self.users[user].id}/roles/{rid}")
        self.users[user].roles.setdefault(project, []).append(role)

    def revoke(self, token: str) -> None:
        """Revokes a token (DELETE /v3/auth/tokens, as an admin)."""
        if not self._admin_token:
            self._admin_token = self.token("admin", "admin")
        req = urllib.request.Request(f"{self.auth_url}/auth/tokens", method="DELETE", headers={
            "X-Auth-Token": self._admin_token, "X-Subject-Token": token})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 204, r.status

    def _create_endpoint(self, service_type: str, name: str, url: str,
                         region: str | None = None) -> None:
        region = region or self.region
        if region != self.region:
            try:
                self._admin("GET", f"/regions/{region}")
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
                self._admin("POST", "/regions", {"region": {"id": region}})
        services = [s for s in self._admin("GET", f"/services?type={service_type}")["services"]
                    if s["name"] == name]
        sid = services[0]["id"] if services else self._admin("POST", "/services", {"service": {
            "type": service_type, "name": name, "enabled": True}})["service"]["id"]
        for old in self._admin("GET", f"/endpoints?service_id={sid}")["endpoints"]:
            self._admin("DELETE", f"/endpoints/{old['id']}")
        for interface in ("public", "internal", "admin"):
            self._admin("POST", "/endpoints", {"endpoint": {
                "service_id": sid, "interface": interface, "url": url,
                "region_id": region, "enabled": True}})

    def authenticate(self, user: str, project: str | None = None,
                     password: str | None = None) -> tuple[str, dict]:
        """A v3 password login (default domain), scoped to `project` (a name; default: the
        user's first project). Returns the token and the token body (roles, catalog)."""
        spec = self.users.get(user)
        if password is None:
            password = spec.password if spec else self.admin_password
        if project is None:
            project = next(iter(spec.roles)) if spec else "admin"
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
        headers, data = _http_json("POST", f"{self.auth_url}/auth/tokens", body)
        return headers["X-Subject-Token"], data["token"]

    def token(self, user: str, project: str | None = None) -> str:
        """A project-scoped token for `user` (see authenticate)."""
        return self.authenticate(user, project)[0]

    def os_env(self, user: str, project: str | None = None) -> dict[str, str]:
        """OS_* variables for openstack/swift CLIs as `user` in `project`."""
        spec = self.users[user]
        return {
            "OS_AUTH_URL": self.auth_url, "OS_IDENTITY_API_VERSION": "3", "OS_AUTH_TYPE": "password",
            "OS_USERNAME": user, "OS_PASSWORD": spec.password,
            "OS_PROJECT_NAME": project or next(iter(spec.roles)),
            "OS_USER_DOMAIN_ID": "default", "OS_PROJECT_DOMAIN_ID": "default",
            "OS_REGION_NAME": self.region, "OS_INTERFACE": "public",
        }

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None

    def logs(self) -> str:
        out = []
        for f in ("gunicorn.log", "keystone.log"):
            p = self.base / f
            if p.exists():
                out.append(f"--- {p}\n" + p.read_text(errors="replace")[-4000:])
        return "\n".join(out)
def _pg_bin(name: str) -> str:
    """A PostgreSQL server program: Debian keeps them in /usr/lib/postgresql/<v>/bin."""
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install -y postgresql)")


@dataclass
class Postgres:
    """A real PostgreSQL server (Debian's package) on a free loopback port, its data in
    a temporary directory of its own, started and stopped by PID. PostgreSQL refuses to
    run as root: as root, the server runs as the `postgres` system user."""

    base: Path | None = None
    port: int = 0
    proc: Proc | None = None
    user: str = "stackfed"
    dbname: str = "stackfed"

    @property
    def url(self) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    def _as_server_user(self) -> dict:
        if os.getuid() != 0:
            return {}
        import pwd
        pw = pwd.getpwnam("postgres")
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def start(self) -> None:
        """initdb into a fresh temporary directory, start, create the role and database."""
        self.base = Path(tempfile.mkdtemp(prefix="stackfed-pg-"))
        os.chmod(self.base, 0o755)
        data = self.base / "data"
        as_user = self._as_server_user()
        if as_user:
            os.chown(self.base, as_user["user"], as_user["group"])
        subprocess.run([_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                       check=True, capture_output=True, cwd=self.base, **as_user)
        self.port = free_port()
        self.start_server()
        try:
            self.psql(f"CREATE ROLE {self.user} LOGIN", db="postgres")
            self.psql(f"CREATE DATABASE {self.dbname} OWNER {self.user}", db="postgres")
        except BaseException:
            self.teardown()
            raise

    def start_server(self) -> None:
        """Starts the server on its port with its data (kept across restarts)."""
        assert self.base is not None
        as_user = self._as_server_user()
        argv = [_pg_bin("postgres"), "-D", str(self.base / "data"), "-h", "127.0.0.1",
                "-p", str(self.port), "-k", str(self.base), "-c", "fsync=off",
                "-c", "max_connections=200", "-c", "shared_buffers=32MB"]
        log = self.base / "postgres.log"
        out = open(log, "ab")
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, cwd=self.base, **as_user)
        out.close()
        self.proc = Proc("postgres", popen, log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError("postgres exited:\n" + log.read_text(errors="replace")[-2000:])
            r = subprocess.run([_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                               capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError("postgres did not become ready in 30 s")

    def psql(self, sql: str, db: str | None = None) -> str:
        r = subprocess.run([_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-d", db or self.dbname, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {r.stderr}")
        return r.stdout

    def stop(self, sig=signal.SIGTERM) -> None:
        """SIGTERM: PostgreSQL's smart shutdown would wait for clients; SIGINT is its
        fast shutdown, used here."""
        if self.proc:
            self.proc.stop(sig=signal.SIGINT if sig == signal.SIGTERM else sig, timeout=20)
            self.proc = None

    def teardown(self) -> None:
        self.stop()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


def _maria_bin(*names: str) -> str:
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
        if path:
            return path
    raise FileNotFoundError(f"{names[0]} not found: run scripts/peers-setup (apt-get install mariadb-server)")


class MariaDB:
    """A real MariaDB server (Debian's package) on a free loopback port, its data in a
    temporary directory of its own, started and stopped by PID. The proxies connect
    over TCP as a user with a password and only the grants on its own database (no
    --skip-grant-tables: permission problems show); the fixture administers it through
    its private socket as the OS user (unix_socket authentication). As root, the server
    runs as the `mysql` system user."""

    base: Path | None = None
    port: int = 0
    proc: Proc | None = None
    user: str = "stackfed"
    dbname: str = "stackfed"
    password: str = ""

    @property
    def url(self) -> str:
        return f"mysql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    @property
    def password_file(self) -> Path:
        assert self.base is not None
        return self.base / "password"

    @property
    def socket(self) -> Path:
        assert self.base is not None
        return self.base / "mysqld.sock"

    def _os_user(self) -> str:
        import pwd
        return "mysql" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name

    def start(self) -> None:
        """mariadb-install-db into a fresh temporary directory, start, create the
        database and its user with a password."""
        import secrets
        self.base = Path(tempfile.mkdtemp(prefix="stackfed-maria-"))
        os.chmod(self.base, 0o755)
        if os.getuid() == 0:
            import pwd
            pw = pwd.getpwnam("mysql")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self.password = secrets.token_hex(16)
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)
        r = subprocess.run([_maria_bin("mariadb-install-db", "mysql_install_db"), "--no-defaults",
                            f"--datadir={self.base / 'data'}", f"--user={self._os_user()}",
                            "--auth-root-authentication-method=socket", "--skip-test-db"],
                           capture_output=True, text=True, cwd=self.base, timeout=120)
        if r.returncode != 0:
            shutil.rmtree(self.base, ignore_errors=True)
            raise RuntimeError(f"mariadb-install-db: {r.stdout[-2000:]}{r.stderr[-2000:]}")
        self.port = free_port()
        try:
            self.start_server()
            self.sql(f"CREATE DATABASE {self.dbname};"
                     f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}';"
                     f"GRANT ALL PRIVILEGES ON {self.dbname}.* TO '{self.user}'@'127.0.0.1';",
                     db="mysql")
        except BaseException:
            self.teardown()
            raise

    def start_server(self) -> None:
        """Starts the server on its port with its data (kept across restarts)."""
        assert self.base is not None
        argv = [_maria_bin("mariadbd", "mysqld"), "--no-defaults", f"--datadir={self.base / 'data'}",
                f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
                f"--pid-file={self.base / 'mysqld.pid'}", f"--user={self._os_user()}",
                "--skip-name-resolve", "--max-connections=300", "--innodb-buffer-pool-size=32M",
                "--innodb-flush-log-at-trx-commit=2", "--character-set-server=utf8mb4",
                f"--log-error={self.base / 'error.log'}"]
        log = self.base / "mariadbd.log"
        self.proc = spawn("mariadbd", argv, log, cwd=self.base)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.proc.alive():
                err = self.base / "error.log"
                text = err.read_text(errors="replace") if err.exists() else log.read_text(errors="replace")
                raise RuntimeError("mariadbd exited:\n" + text[-2000:])
            r = subprocess.run([_maria_bin("mariadb-admin", "mysqladmin"), "--no-defaults",
                                f"--socket={self.socket}", "-u", "root" if os.getuid() == 0 else self._os_user(),
                                "ping"], capture_output=True, timeout=10)
            if r.returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError("mariadbd did not become ready in 60 s")

    def sql(self, sql: str, db: str | None = None) -> str:
        """Runs SQL as the administrator (through the socket); tab-separated rows."""
        user = "root" if os.getuid() == 0 else self._os_user()
        r = subprocess.run([_maria_bin("mariadb", "mysql"), "--no-defaults", f"--socket={self.socket}",
                            "-u", user, "-N", "-B", "-e", sql, db or self.dbname],
                           capture_output=True, text=True, errors="replace", timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"mariadb {sql!r}: {r.stderr}")
        return r.stdout

    def stop(self, sig=signal.SIGTERM) -> None:
        """SIGTERM is MariaDB's clean shutdown; SIGKILL a crash."""
        if self.proc:
            self.proc.stop(sig=sig, timeout=30)
            self.proc = None

    def teardown(self) -> None:
        self.stop()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


def settled_count(count, timeout: float = 30.0, settle: float = 1.0) -> int:
    """`count()` (requests a server's access log shows) once it is at least 1 and has not
    changed for `settle` s. gunicorn writes a request's access-log line after the last byte
    of the answer is sent, so a client can have its answer before the line is there."""
    deadline = time.monotonic() + timeout
    last = count()
    while last < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        last = count()
    while True:
        time.sleep(settle)
        now = count()
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def soak_seeds(seeds: list, ci: int = 1) -> list:
    """The seeds a randomised fault test (kill -9 at a random moment) runs with: the first
    `ci` of them by default (CI's time budget), all of them with STACKFED_SOAK=1."""
    return list(seeds) if os.environ.get("STACKFED_SOAK") == "1" else list(seeds)[:ci]


def errors_in_order(ctype, text):
    """The answer with its error entries sorted. Swift's bulk middleware deletes with
    `delete_concurrency` (2) green threads, and SLO validates a manifest's segments with
    `StreamingPile.asyncstarmap` (results as they finish); both list errors as they come,
    so their order differs from run to run on one cluster. Everything else is compared as
    sent."""
    ctype = (ctype or "").split(";")[0]
    if ctype == "application/json":
        try:
            doc = json.loads(text)
        except ValueError:
            return text
        if isinstance(doc, dict) and isinstance(doc.get("Errors"), list):
            doc["Errors"] = sorted(doc["Errors"])
        return json.dumps(doc)
    if ctype.endswith("/xml"):
        m = re.search(r"<errors>(.*)</errors>", text, re.S)
        if m:
            items = sorted(re.findall(r"<object>.*?</object>", m.group(1), re.S))
            text = text[: m.start(1)] + "".join(items) + text[m.end(1):]
        return text
    head, sep, tail = text.partition("Errors:\n")
    if sep:
        lines = tail.split("\n")
        body, rest = [x for x in lines if x], lines[-1] == ""
        text = head + sep + "\n".join(sorted(body)) + ("\n" if rest and body else "")
    return text

"""Fixtures: two real Swift clusters and our federation proxy in front of them.

Started once per test session, stopped (by PID) at the end, also on failure."""

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import peers  # noqa: E402


@pytest.fixture(scope="session")
def workdir():
    with tempfile.TemporaryDirectory(prefix="stackfed-interop-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def clusters(workdir):
    # With the bulk middleware, as Swift's sample pipeline has it (test_swift_bulk
    # starts its own clusters without it).
    cs = peers.start_clusters(workdir / "swift", ["east", "west"], bulk=True)
    yield {c.name: c for c in cs}
    for c in cs:
        c.teardown()


@pytest.fixture(scope="session")
def proxy_binary():
    return peers.cargo_bin("swift-federation-proxy")


@pytest.fixture(scope="session")
def proxy(workdir, clusters, proxy_binary):
    p = peers.FederationProxy(
        workdir / "proxy",
        list(clusters.values()),
        labels={"east": {"tier": "gold", "region": "east"},
                "west": {"tier": "silver", "region": "west"}},
    )
    p.start(proxy_binary)
    yield p
    p.stop()
    if os.environ.get("STACKFED_SHOW_LOGS"):
        print(p.log())


def pytest_runtest_makereport(item, call):
    # On failure, attach the proxy's log tail to the report.
    if call.when == "call" and call.excinfo is not None:
        proxy = item.funcargs.get("proxy")
        if proxy is not None:
            item.add_report_section("call", "proxy log", proxy.log())


@pytest.fixture(scope="session")
def keystone(workdir):
    """A real Keystone (peers.Keystone) for the tests that ask for it; started once per
    session, on first use, so suites that do not need it never pay its start time.
    Register catalog endpoints with keystone.add_endpoint(type, name, url)."""
    k = peers.Keystone(workdir / "keystone")
    k.start()
    yield k
    k.stop()

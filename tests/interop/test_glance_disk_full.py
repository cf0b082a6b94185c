"""The edge cache's own disk fills up in the middle of a fill: its cache directory is a
real tmpfs of 8 MiB (mounted by the test, unmounted in teardown), the image 12 MiB, the
central a real Glance behind the recording relay of test_glance_stall (which forwards
everything here, and notes each image-data GET's `Range`).

The designed behaviour (image-cache-core's fill, engine/fill.rs and engine/data.rs): the
client streaming from the fill is not cut off and gets no error: the rest of its body
comes from the central, asked with `Range: bytes=<what it has>-`, and the whole image is
still verified before its last byte goes out. The fill's partial blob is removed, the
cause is logged and counted (`stackfed_cache_fill_failures_total{cause="no_space"}`), and
for `local_fault_pause` misses stream through uncached; then a smaller image caches
again, and once the disk has room the big one caches too."""

import shutil
import time

import pytest

import peers
from test_glance_stall import MIB, Relay, cached_ids, incomplete_files, md5, metric, new_image, raw_get

DISK_MIB = 8
PAUSE_S = 3.0


@pytest.fixture(scope="module")
def central(workdir):
    g = peers.GlanceCentral(workdir / "glance-full-central")
    g.start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def relay(central):
    r = Relay(central.port)
    yield r
    r.close()


@pytest.fixture(scope="module")
def edge(workdir, relay):
    metrics_port = peers.free_port()
    e = peers.GlanceEdge(
        workdir / "glance-full-edge", relay.endpoint,
        extra_toml=(f'metrics_listen = "127.0.0.1:{metrics_port}"\n'
                    f'local_fault_pause = "{PAUSE_S}s"\n'))
    e.metrics = metrics_port
    peers.mount_tmpfs(e.cache_dir, DISK_MIB)
    try:
        e.start(peers.cargo_bin("glance-edge-cache"))
        yield e
    finally:
        e.stop()
        peers.unmount(e.cache_dir)


def test_a_full_disk_mid_fill_finishes_the_download_from_the_central_with_range(edge, central, relay):
    big_id, big = new_image(central, 12, "too-big-for-the-disk")
    small_id, small = new_image(central, 1, "fits")
    free_before = shutil.disk_usage(edge.cache_dir).free
    failures = metric(edge.metrics, "stackfed_cache_fill_failures_total", cause="no_space")
    ranged = metric(edge.metrics, "stackfed_cache_fill_fallbacks_total", outcome="ranged")
    relay.reset()

    status, hdrs, body, took = raw_get(edge, f"/v2/images/{big_id}/file")
    # The client sees one whole, verified image: no error, no cut.
    assert status == 200, hdrs
    assert len(body) == len(big) and md5(body) == md5(big), (len(body), edge.log())
    print(f"disk full mid-fill: {len(big)} bytes in {took:.2f} s, ranges asked: {relay.ranges}")
    # The fill's request, then the client's rest from where it was, to the last byte.
    assert relay.ranges[0] is None, relay.ranges
    assert len(relay.ranges) == 2, relay.ranges
    first, last = relay.ranges[1].removeprefix("bytes=").split("-")
    assert 0 < int(first) <= DISK_MIB * MIB and int(last) == len(big) - 1, relay.ranges
    # The cause named in the log and counted; nothing partial left, nothing cached.
    log = edge.log()
    assert "No space left on device" in log and "no_space" in log, log
    assert metric(edge.metrics, "stackfed_cache_fill_failures_total", cause="no_space") == failures + 1
    assert metric(edge.metrics, "stackfed_cache_fill_fallbacks_total", outcome="ranged") == ranged + 1
    assert big_id not in cached_ids(edge)
    assert incomplete_files(edge) == []
    assert shutil.disk_usage(edge.cache_dir).free >= free_before - MIB

    # Misses stream through for `local_fault_pause` (no fill into the disk that just
    # failed; the engine's tests check that); then a smaller image caches again.
    deadline = time.monotonic() + PAUSE_S + 10
    while True:
        status, _, body, _ = raw_get(edge, f"/v2/images/{small_id}/file")
        assert status == 200 and md5(body) == md5(small)
        if small_id in cached_ids(edge) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert small_id in cached_ids(edge), edge.log()
    # With room on the disk, the big one caches as well (and is served from it).
    peers.resize_tmpfs(edge.cache_dir, 64)
    relay.reset()
    status, _, body, _ = raw_get(edge, f"/v2/images/{big_id}/file")
    assert status == 200 and md5(body) == md5(big)
    assert big_id in cached_ids(edge)
    assert relay.ranges == [None], relay.ranges
    status, _, body, _ = raw_get(edge, f"/v2/images/{big_id}/file")
    assert status == 200 and md5(body) == md5(big)
    assert relay.ranges == [None], relay.ranges
    assert incomplete_files(edge) == []

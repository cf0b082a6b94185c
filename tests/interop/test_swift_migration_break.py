"""Live container migration (issue 15), tried by a newcomer: hostile admin input,
concurrent duplicate requests, odd names and content, against two real Swift clusters.

Shares the module-scoped migration proxy of test_swift_migration.py (its fixture and
helpers, imported); every expected value is what a real cluster answers directly."""

import hashlib
import threading

import pytest
import requests
from swiftclient.exceptions import ClientException

from test_swift_migration import (  # noqa: F401 (mproxy is a fixture)
    admin_token,
    cancel,
    conn,
    direct_objects,
    fill_container,
    migration,
    mproxy,
    uniq,
    wait_done,
)


def post_move(proxy, body, token=None):
    return requests.post(f"{proxy.endpoint}/federation/v1/migrations",
                         headers={"X-Auth-Token": token or admin_token(proxy)},
                         json=body, timeout=30)


def journal_for(proxy, name):
    r = requests.get(f"{proxy.endpoint}/federation/v1/migrations",
                     headers={"X-Auth-Token": admin_token(proxy)}, timeout=10)
    assert r.status_code == 200, r.text
    out = []
    for m in r.json()["migrations"]:
        entry = m.get("entry", m)
        if name in entry.get("containers", []):
            out.append(entry)
    return out


def test_concurrent_duplicate_starts_run_one_migration(mproxy, clusters):
    """Eight operators (or one impatient script) ask to move the same container at the
    same moment: one migration runs, the others are refused with 409, and the
    container ends on the destination once, complete."""
    fed = conn(mproxy.auth_url)
    name = uniq("dup")
    want = fill_container(fed, name, 20)
    token = admin_token(mproxy)
    barrier = threading.Barrier(8)
    answers = []

    def go():
        barrier.wait()
        r = post_move(mproxy, {"account": "AUTH_test", "container": name, "to": "west"}, token)
        answers.append((r.status_code, r.text))

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(c for c, _ in answers)
    assert codes == [202] + [409] * 7, answers
    mid = next(__import__("json").loads(t)["id"] for c, t in answers if c == 202)
    wait_done(mproxy, mid)
    entries = journal_for(mproxy, name)
    # The refused requests left no journal entry behind (nothing to resume, nothing
    # that a later proxy could run a second time).
    assert [e["id"] for e in entries] == [mid], entries
    west = direct_objects(clusters["west"], name)
    assert {n: o["hash"] for n, o in west.items()} == want
    with pytest.raises(ClientException) as e:
        conn(clusters["east"].auth_url).head_container(name)
    assert e.value.http_status == 404

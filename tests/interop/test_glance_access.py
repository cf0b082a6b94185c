"""Per-project access through the edge, against a real Glance that enforces identity
from trusted headers: every cross-project read is refused online and offline."""

import hashlib
import os

import pytest
import requests

import peers


def who(project, roles="member"):
    return {"X-Identity-Status": "Confirmed", "X-Project-Id": project, "X-Roles": roles,
            "X-User-Id": f"user-{project}"}


A, B, C, ADMIN = who("projA"), who("projB"), who("projC"), who("projAdmin", "admin,member")


@pytest.fixture(scope="module")
def central(workdir):
    g = peers.GlanceCentral(workdir / "glance-trusted", trusted=True)
    g.start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def edge(workdir, central):
    e = peers.GlanceEdge(workdir / "glance-edge-trusted", central.endpoint, identity="trusted-headers")
    e.start(peers.cargo_bin("glance-edge-cache"))
    yield e
    e.stop()


def make(central, headers, name, visibility, data):
    r = requests.post(central.endpoint + "/v2/images", headers=headers,
                      json={"name": name, "disk_format": "raw", "container_format": "bare", "visibility": visibility})
    assert r.status_code == 201, r.text
    img = r.json()["id"]
    r = requests.put(f"{central.endpoint}/v2/images/{img}/file", data=data,
                     headers={**headers, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return img


@pytest.fixture(scope="module")
def world(central):
    data = {k: os.urandom(256 * 1024) for k in ("private", "shared", "public")}
    ids = {
        "private": make(central, A, "a-private", "private", data["private"]),
        "shared": make(central, A, "a-shared", "shared", data["shared"]),
        "public": make(central, ADMIN, "public", "public", data["public"]),
    }
    s = ids["shared"]
    assert requests.post(f"{central.endpoint}/v2/images/{s}/members", json={"member": "projB"}, headers=A).status_code == 200
    r = requests.put(f"{central.endpoint}/v2/images/{s}/members/projB", json={"status": "accepted"}, headers=B)
    assert r.status_code == 200, r.text
    return ids, data


# Who may read what: the rules Glance applies, which the edge must apply offline too.
ALLOWED = {
    ("A", "private"), ("A", "shared"), ("A", "public"),
    ("B", "shared"), ("B", "public"),
    ("C", "public"),
    ("ADMIN", "private"), ("ADMIN", "shared"), ("ADMIN", "public"),
}
PEOPLE = {"A": A, "B": B, "C": C, "ADMIN": ADMIN}


def check_everything(edge, ids, data, offline):
    for person, headers in PEOPLE.items():
        for kind, img in ids.items():
            show = requests.get(f"{edge.endpoint}/v2/images/{img}", headers=headers)
            down = requests.get(f"{edge.endpoint}/v2/images/{img}/file", headers=headers)
            if (person, kind) in ALLOWED:
                assert show.status_code == 200, (person, kind, offline, show.text)
                if not offline or kind != "private" or person == "A":
                    assert down.status_code == 200, (person, kind, offline, down.text)
                    assert hashlib.md5(down.content).hexdigest() == hashlib.md5(data[kind]).hexdigest()
            else:
                assert show.status_code == 404, (person, kind, offline, show.status_code)
                assert down.status_code == 404, (person, kind, offline, down.status_code)
                assert data[kind][:64] not in down.content
        listed = {i["id"] for i in requests.get(edge.endpoint + "/v2/images", headers=headers).json()["images"]}
        for kind, img in ids.items():
            assert (img in listed) == ((person, kind) in ALLOWED), (person, kind, offline)


def test_cross_project_reads_are_refused_online_and_offline(edge, central, world):
    ids, data = world
    # Online: the central decides, the edge learns (metadata, members, data).
    check_everything(edge, ids, data, offline=False)
    central.stop()
    try:
        # Offline: the edge decides from cached metadata alone, the same way.
        check_everything(edge, ids, data, offline=True)
        # The cache API is for admins only.
        assert requests.get(edge.endpoint + "/v2/cache", headers=B).status_code == 403
        assert requests.get(edge.endpoint + "/v2/cache", headers=ADMIN).status_code == 200
        # No identity at all: 401.
        assert requests.get(edge.endpoint + "/v2/images").status_code == 401
    finally:
        central.start()


def _shared_with_b(central, name):
    img = make(central, A, name, "shared", os.urandom(64 * 1024))
    assert requests.post(f"{central.endpoint}/v2/images/{img}/members", json={"member": "projB"}, headers=A).status_code == 200
    r = requests.put(f"{central.endpoint}/v2/images/{img}/members/projB", json={"status": "accepted"}, headers=B)
    assert r.status_code == 200, r.text
    return img


def test_a_member_removed_is_not_shown_to_it_offline(edge, central):
    # Two ways the edge learns that projB is no longer a member: the central answers
    # projB's own show 404 (membership removed at the central), and the removal goes
    # through the edge itself, after which an admin's show is recorded. Either way, once
    # the central is offline, projB must get what real Glance answers it: 404.
    direct = _shared_with_b(central, "removed-at-the-central")
    through = _shared_with_b(central, "removed-through-the-edge")
    for img in (direct, through):
        assert requests.get(f"{edge.endpoint}/v2/images/{img}", headers=B).status_code == 200
        assert requests.get(f"{edge.endpoint}/v2/images/{img}/file", headers=B).status_code == 200
    assert requests.delete(f"{central.endpoint}/v2/images/{direct}/members/projB", headers=A).status_code == 204
    assert requests.get(f"{edge.endpoint}/v2/images/{direct}", headers=B).status_code == 404
    assert requests.delete(f"{edge.endpoint}/v2/images/{through}/members/projB", headers=A).status_code == 204
    # An admin sees every member at the central (none is left here).
    r = requests.get(f"{central.endpoint}/v2/images/{through}/members", headers=ADMIN)
    assert r.status_code == 200 and r.json()["members"] == [], r.text
    assert requests.get(f"{edge.endpoint}/v2/images/{through}", headers=ADMIN).status_code == 200
    for img in (direct, through):
        assert requests.get(f"{central.endpoint}/v2/images/{img}", headers=B).status_code == 404
    central.stop()
    try:
        for img in (direct, through):
            show = requests.get(f"{edge.endpoint}/v2/images/{img}", headers=B)
            down = requests.get(f"{edge.endpoint}/v2/images/{img}/file", headers=B)
            listed = {i["id"] for i in requests.get(edge.endpoint + "/v2/images", headers=B).json()["images"]}
            assert (show.status_code, down.status_code, img in listed) == (404, 404, False), img == direct
            # The owner still has it.
            assert requests.get(f"{edge.endpoint}/v2/images/{img}", headers=A).status_code == 200
    finally:
        central.start()

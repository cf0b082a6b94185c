"""The edge in Keystone mode, in front of a real Glance 33 protected by a real Keystone
30 (keystonemiddleware's auth_token), used through the catalog by python-openstackclient,
python-glanceclient and openstacksdk.

Layout: the session's Keystone is the central site's; the central Glance validates tokens
with it as the `glance` service user. Two edges (`identity = "keystone"`, service user
`stackfed-edge`, the caller's token forwarded to the central):
- `edge_c` validates with the central Keystone (region `Edge1` in the catalog);
- `edge_e` validates with an edge-site Keystone, a second real Keystone that replicates
  the central one (database and Fernet keys copied, as distributed clouds keep one
  Keystone per site in sync), region `Edge2`.
The central site going dark is the central Glance stopped and the central Keystone
frozen (SIGSTOP: a lost link is silence, not a refusal)."""

import hashlib
import json
import os
import signal
import subprocess
import time

import pytest
import requests

import peers

OPENSTACK = str(peers.VENV_BIN / "openstack")
GLANCE = str(peers.VENV_BIN / "glance")


@pytest.fixture(scope="module")
def site(workdir, keystone):
    """The central Glance, the two edges, the edge-site Keystone and the catalog."""
    base = workdir / "glance-keystone"
    edge_c = peers.GlanceEdge(base / "edge-c", "", port=peers.free_port())
    edge_e = peers.GlanceEdge(base / "edge-e", "", port=peers.free_port())
    # A third edge that reads from the central as its own service user (an admin of the
    # central Glance) and applies the visibility rules itself.
    edge_s = peers.GlanceEdge(base / "edge-s", "", port=peers.free_port())
    keystone.add_endpoint("image", "glance-edge-1", edge_c.endpoint, region="Edge1")
    keystone.add_endpoint("image", "glance-edge-2", edge_e.endpoint, region="Edge2")
    central = peers.GlanceCentral(base / "central", keystone=keystone)
    central.write_config()  # picks its port
    keystone.add_endpoint("image", "glance", central.endpoint)
    edge_ks = peers.Keystone(base / "edge-keystone", replica_of=keystone)
    procs = []
    try:
        edge_ks.start()
        procs.append(edge_ks)
        central.start()
        procs.append(central)
        password = base / "edge-password"
        password.write_text(keystone.users["stackfed-edge"].password + "\n")
        password.chmod(0o600)
        binary = peers.cargo_bin("glance-edge-cache")
        if "admin" not in keystone.users["stackfed-edge"].roles["service"]:
            keystone.grant("stackfed-edge", "service", "admin")
        for edge, ks, mode in ((edge_c, keystone, "forward"), (edge_e, edge_ks, "forward"),
                               (edge_s, keystone, "service")):
            edge.central_url = central.endpoint
            edge.identity = "keystone"
            edge.extra_toml = (
                "\n[keystone]\n"
                f'auth_url = "{ks.auth_url}"\n'
                f'www_authenticate_uri = "{keystone.auth_url}"\n'
                'username = "stackfed-edge"\n'
                f'password_file = "{password}"\n'
                "cache_seconds = 2\n"
                "offline_seconds = 600\n"
                # A cold Keystone on a loaded 2-core machine can take more than 1 s.
                "timeout_seconds = 5\n"
                f'central_auth = "{mode}"\n'
            )
            edge.start(binary)
            procs.append(edge)
        yield {"central": central, "edge_c": edge_c, "edge_e": edge_e, "edge_s": edge_s, "edge_ks": edge_ks,
               "keystone": keystone}
    finally:
        if keystone.proc:
            os.killpg(keystone.proc.pid, signal.SIGCONT)
        for p in reversed(procs):
            p.stop()


def auth(token):
    return {"X-Auth-Token": token}


def make(central, token, name, visibility, data):
    r = requests.post(central.endpoint + "/v2/images", headers=auth(token), json={
        "name": name, "disk_format": "raw", "container_format": "bare", "visibility": visibility})
    assert r.status_code == 201, r.text
    img = r.json()["id"]
    r = requests.put(f"{central.endpoint}/v2/images/{img}/file", data=data,
                     headers={**auth(token), "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return img


@pytest.fixture(scope="module")
def world(site):
    """Images made at the central by their owners: alpha's private and shared (with beta,
    accepted), beta's private, and a public one made by the admin."""
    ks, central = site["keystone"], site["central"]
    alice, bob, admin = ks.token("alice"), ks.token("bob"), ks.token("admin", "admin")
    data = {k: os.urandom(192 * 1024) for k in ("alpha", "shared", "beta", "public")}
    ids = {
        "alpha": make(central, alice, "alpha-private", "private", data["alpha"]),
        "shared": make(central, alice, "alpha-shared", "shared", data["shared"]),
        "beta": make(central, bob, "beta-private", "private", data["beta"]),
        "public": make(central, admin, "everyones", "public", data["public"]),
    }
    s = ids["shared"]
    beta = ks.project_ids["beta"]
    r = requests.post(f"{central.endpoint}/v2/images/{s}/members", json={"member": beta}, headers=auth(alice))
    assert r.status_code == 200, r.text
    r = requests.put(f"{central.endpoint}/v2/images/{s}/members/{beta}", json={"status": "accepted"},
                     headers=auth(bob))
    assert r.status_code == 200, r.text
    return ids, data


# Who may read what (Glance's rules): alice and bob are members of alpha and beta, rita
# only reads alpha, admin administers.
ALLOWED = {
    "alice": {"alpha", "shared", "public"},
    "rita": {"alpha", "shared", "public"},
    "bob": {"shared", "beta", "public"},
    "admin": {"alpha", "shared", "beta", "public"},
}
PROJECT = {"admin": "admin"}


def cli(argv, env, region="Edge1", timeout=180):
    out = subprocess.run(argv, env={**env, "OS_REGION_NAME": region, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=timeout)
    return out


def test_refusals_are_glances(site, world):
    """Missing, invalid and revoked tokens: the edge answers exactly as the central does
    (auth_token's 401: JSON body, WWW-Authenticate), for every Accept."""
    ks, central, edge = site["keystone"], site["central"], site["edge_c"]
    ids, _ = world
    wrong = []
    for headers in ({}, auth("gAAAAAnot-a-token"), auth("")):
        for accept in ("*/*", "text/html", "application/json", "text/plain", None):
            h = {**headers, **({"Accept": accept} if accept else {})}
            for path in ("/v2/images", f"/v2/images/{ids['public']}/file"):
                want = requests.get(central.endpoint + path, headers=h)
                got = requests.get(edge.endpoint + path, headers=h)
                assert want.status_code == 401, want.text
                if (got.status_code, got.headers["Content-Type"], got.text) != (
                        want.status_code, want.headers["Content-Type"], want.text):
                    wrong.append((headers, accept, path, want.headers["Content-Type"], want.text,
                                  got.headers["Content-Type"], got.text))
                assert got.headers["WWW-Authenticate"] == want.headers["WWW-Authenticate"]
    assert not wrong, "\n".join(map(repr, wrong))


def test_access_rules_and_errors_as_glance(site, world):
    """Glance's answers, compared byte for byte with the central's: error bodies per
    Accept, the legacy Content-Range request header, and a deactivated image (its data
    for admins only)."""
    ks, central, edge = site["keystone"], site["central"], site["edge_c"]
    ids, data = world
    alice, admin = ks.token("alice"), ks.token("admin", "admin")

    def both(method, path, token, **headers):
        h = {**auth(token), **headers}
        return (requests.request(method, central.endpoint + path, headers=h),
                requests.request(method, edge.endpoint + path, headers=h))

    def same(want, got, what):
        assert (got.status_code, got.headers.get("Content-Type"), got.content) == (
            want.status_code, want.headers.get("Content-Type"), want.content), (what, want.text, got.text)

    missing = "0b9ecbbf-1d6b-4d3e-9a53-2cb2a0a2c0de"
    for accept in ("*/*", "text/html", "application/json", "text/plain", "application/json, */*;q=0.5",
                   "text/html;q=0.5, application/json", "application/*", ""):
        for path in (f"/v2/images/{missing}", f"/v2/images/{ids['beta']}", f"/v2/images/{ids['beta']}/file"):
            want, got = both("GET", path, alice, Accept=accept)
            assert want.status_code == 404
            same(want, got, (accept, path))
    # The legacy Content-Range request header selects a range, as Glance honours it.
    img, size = ids["alpha"], len(data["alpha"])
    for value in ("bytes 10-19/*", f"bytes 0-{size - 1}/{size}", f"bytes {size - 5}-{size - 1}/*"):
        want, got = both("GET", f"/v2/images/{img}/file", alice, **{"Content-Range": value})
        assert want.status_code == 206, (value, want.text)
        assert (got.status_code, got.headers.get("Content-Range"), got.content) == (
            want.status_code, want.headers.get("Content-Range"), want.content), value
    for value in (f"bytes 10-{size}/*", f"bytes {size}-{size}/{size + 1}", "bytes 5-1/*", "bytes=0-9"):
        want, got = both("GET", f"/v2/images/{img}/file", alice, **{"Content-Range": value})
        assert got.status_code == want.status_code, (value, want.status_code, want.text, got.text)
    # Deactivated: 403 for the owner, the data for an admin, as the central answers.
    r = requests.post(f"{central.endpoint}/v2/images/{img}/actions/deactivate", headers=auth(admin))
    assert r.status_code == 204, r.text
    try:
        for accept in ("application/json", "*/*"):
            want, got = both("GET", f"/v2/images/{img}/file", alice, Accept=accept)
            assert want.status_code == 403
            same(want, got, ("deactivated", accept))
        want, got = both("GET", f"/v2/images/{img}/file", admin)
        assert want.status_code == 200 and want.content == data["alpha"]
        assert got.status_code == 200 and got.content == data["alpha"], got.text
    finally:
        r = requests.post(f"{central.endpoint}/v2/images/{img}/actions/reactivate", headers=auth(admin))
        assert r.status_code == 204, r.text


def test_openstack_cli_through_the_catalog(site, world, tmp_path):
    """`openstack image list|show|save` as members of two projects, a reader and an
    admin, with the edge picked from the catalog (region Edge1); cross-project reads
    refused as Glance refuses them."""
    ks, edge = site["keystone"], site["edge_c"]
    ids, data = world
    for user, allowed in ALLOWED.items():
        env = ks.os_env(user, PROJECT.get(user))
        out = cli([OPENSTACK, "--debug", "image", "list", "-f", "json"], env)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"{edge.endpoint}/v2/images" in out.stderr, "the listing went through the edge"
        listed = {i["ID"] for i in json.loads(out.stdout)}
        for kind, img in ids.items():
            assert (img in listed) == (kind in allowed), (user, kind)
        # One download each: alice's own, rita reads alpha's, bob's shared one, and the
        # admin another project's private image.
        kind = {"alice": "alpha", "rita": "alpha", "bob": "shared", "admin": "beta"}[user]
        target = tmp_path / f"{user}.img"
        save = cli([OPENSTACK, "image", "save", "--file", str(target), ids[kind]], env)
        assert save.returncode == 0, save.stderr[-2000:]
        assert hashlib.md5(target.read_bytes()).hexdigest() == hashlib.md5(data[kind]).hexdigest()
    # Show: one's own, and the other project's private image refused (as Glance: 404).
    for user, mine, theirs in (("alice", "alpha", "beta"), ("bob", "beta", "alpha")):
        env = ks.os_env(user)
        show = cli([OPENSTACK, "image", "show", ids[mine], "-f", "json"], env)
        assert show.returncode == 0, (user, show.stderr[-2000:])
        assert json.loads(show.stdout)["id"] == ids[mine]
        show = cli([OPENSTACK, "image", "show", ids[theirs], "-f", "json"], env)
        assert show.returncode != 0, user
        assert "No Image found" in show.stderr or "Not Found" in show.stderr, show.stderr[-2000:]


def test_glanceclient_and_openstacksdk_through_the_catalog(site, world, tmp_path):
    ks = site["keystone"]
    ids, data = world
    env = ks.os_env("bob")
    target = tmp_path / "shared.img"
    out = cli([GLANCE, "image-download", "--file", str(target), ids["shared"]], env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert target.read_bytes() == data["shared"]
    out = cli([GLANCE, "image-download", "--file", str(tmp_path / "x"), ids["alpha"]], env)
    assert out.returncode != 0 and "404" in out.stderr + out.stdout, out.stderr

    import openstack
    import openstack.exceptions
    u = ks.users["alice"]
    conn = openstack.connect(auth_url=ks.auth_url, username="alice", password=u.password,
                             project_name="alpha", user_domain_id="default", project_domain_id="default",
                             region_name="Edge1", interface="public")
    try:
        assert conn.image.get_endpoint().rstrip("/").startswith(site["edge_c"].endpoint)
        names = {i.name for i in conn.image.images()}
        assert {"alpha-private", "alpha-shared", "everyones"} <= names and "beta-private" not in names
        got = conn.image.download_image(ids["alpha"])
        assert hashlib.md5(got.content if hasattr(got, "content") else got).hexdigest() == \
            hashlib.md5(data["alpha"]).hexdigest()
        with pytest.raises(openstack.exceptions.NotFoundException):
            conn.image.get_image(ids["beta"])
    finally:
        conn.close()


def test_an_edge_reading_as_its_service_user_applies_the_rules_itself(site, world):
    """central_auth = "service": the central answers the edge's service user (who sees
    every image); each caller still sees exactly what Glance would show them."""
    ks, edge = site["keystone"], site["edge_s"]
    ids, data = world
    # bob first: the edge has learned nothing about the shared image's members yet.
    for user in ("bob", "alice", "rita"):
        token = ks.token(user)
        r = requests.get(edge.endpoint + "/v2/images", headers=auth(token))
        assert r.status_code == 200, r.text
        listed = {i["id"] for i in r.json()["images"]}
        for kind, img in ids.items():
            assert (img in listed) == (kind in ALLOWED[user]), (user, kind)
            show = requests.get(f"{edge.endpoint}/v2/images/{img}", headers=auth(token))
            down = requests.get(f"{edge.endpoint}/v2/images/{img}/file", headers=auth(token))
            if kind in ALLOWED[user]:
                assert show.status_code == 200 and down.content == data[kind], (user, kind, show.text)
            else:
                assert (show.status_code, down.status_code) == (404, 404), (user, kind)
                assert data[kind][:64] not in down.content


def test_a_revoked_token_is_refused_once_its_validation_is_refreshed(site, world):
    ks, edge = site["keystone"], site["edge_c"]
    ids, _ = world
    token = ks.token("alice")
    assert requests.get(f"{edge.endpoint}/v2/images/{ids['alpha']}", headers=auth(token)).status_code == 200
    ks.revoke(token)
    # cache_seconds = 2: at most that long later, Keystone is asked again and says no.
    time.sleep(2.5)
    r = requests.get(f"{edge.endpoint}/v2/images/{ids['alpha']}", headers=auth(token))
    assert r.status_code == 401, r.text
    assert "This server could not verify that you are authorized" in r.text
    # Remembered as rejected: still refused (never honoured), also from the listing.
    assert requests.get(f"{edge.endpoint}/v2/images", headers=auth(token)).status_code == 401


def test_an_unidentified_caller_gets_the_401_on_every_path(site, world):
    """Glance's auth_token runs before its router: without a valid token, a path that
    names no image (not a UUID) is a 401 too, not the router's 404."""
    central = site["central"]
    wrong = []
    for edge in (site["edge_c"], site["edge_s"]):
        for token in (None, "gAAAAAnot-a-token"):
            for method, path in (("GET", "/v2/images/not-an-id"), ("GET", "/v2/images/not-an-id/file"),
                                 ("GET", "/v2/images/not-an-id/members"), ("DELETE", "/v2/images/not-an-id"),
                                 ("PATCH", "/v2/images/not-an-id")):
                for accept in ("application/json", None):
                    h = {**(auth(token) if token else {}), **({"Accept": accept} if accept else {})}
                    want = requests.request(method, central.endpoint + path, headers=h)
                    got = requests.request(method, edge.endpoint + path, headers=h)
                    assert want.status_code == 401, (method, path, want.status_code, want.text)
                    seen = lambda r: (r.status_code, r.headers.get("Content-Type"),
                                      r.headers.get("WWW-Authenticate"), r.text)
                    if seen(got) != seen(want):
                        wrong.append((edge.endpoint, token, method, path, accept, seen(want), seen(got)))
    assert not wrong, "\n".join(map(repr, wrong))
    # Two tokens, the first one valid: Glance's server joins them into one value that
    # Keystone rejects; the edge must not honour the first alone.
    alice = site["keystone"].token("alice")
    for edge in (site["edge_c"], site["edge_s"]):
        for pair in ((alice, "gAAAAAnot-a-token"), ("gAAAAAnot-a-token", alice)):
            h = [("X-Auth-Token", t) for t in pair] + [("Accept", "application/json")]
            want, got = raw_get(central.endpoint, "/v2/images", h), raw_get(edge.endpoint, "/v2/images", h)
            assert want[0] == 401, want
            assert got == want, (pair, want, got)


def raw_get(endpoint, path, headers):
    """GET with repeated headers (requests merges them): (status, body)."""
    import http.client
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        c.putrequest("GET", path)
        for k, v in headers:
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_writes_are_decided_by_the_callers_roles(site, world):
    """Through either edge (the caller's token forwarded, or the edge reading as its
    service user), a write carries the caller's own token: a reader of alpha gets the
    403 the central gives, a member of beta the central's 404 for alpha's private image,
    a member of alpha may write. The central runs Glance's secure-RBAC defaults."""
    ks, central = site["keystone"], site["central"]
    ids, _ = world
    rita, bob, alice = ks.token("rita"), ks.token("bob"), ks.token("alice")
    img = ids["alpha"]
    patch = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
    new = {"name": "by-rita", "disk_format": "raw", "container_format": "bare"}
    refused = [
        ("POST", "/v2/images", {"json": new}),
        ("PATCH", f"/v2/images/{img}", {"data": json.dumps([{"op": "replace", "path": "/name", "value": "x"}]),
                                        "headers": patch}),
        ("DELETE", f"/v2/images/{img}", {}),
        ("PUT", f"/v2/images/{img}/tags/by-rita", {}),
        ("POST", f"/v2/images/{img}/members", {"json": {"member": ks.project_ids["beta"]}}),
        ("POST", f"/v2/images/{img}/actions/deactivate", {}),
    ]
    wrong = []
    for edge in (site["edge_c"], site["edge_s"]):
        for who, token in (("rita", rita), ("bob", bob)):
            for method, path, kw in refused:
                if who == "bob" and method == "POST" and path == "/v2/images":
                    continue  # bob may create images in beta
                kw = {**kw, "headers": {**auth(token), "Accept": "application/json", **kw.get("headers", {})}}
                want = requests.request(method, central.endpoint + path, **kw)
                got = requests.request(method, edge.endpoint + path, **kw)
                assert want.status_code in (403, 404), (who, method, path, want.status_code, want.text)
                if (got.status_code, got.text) != (want.status_code, want.text):
                    wrong.append((edge.endpoint, who, method, path, want.status_code, want.text,
                                  got.status_code, got.text))
    assert not wrong, "\n".join(map(repr, wrong))
    # Nothing the refused callers tried changed alpha's image.
    r = requests.get(f"{central.endpoint}/v2/images/{img}", headers=auth(alice))
    assert r.status_code == 200 and r.json()["name"] == "alpha-private" and r.json()["status"] == "active"
    assert "by-rita" not in r.json()["tags"]
    # A member of alpha writes through either edge.
    for edge in (site["edge_c"], site["edge_s"]):
        r = requests.post(edge.endpoint + "/v2/images", headers=auth(alice), json={**new, "name": "by-alice"})
        assert r.status_code == 201, r.text
        assert r.json()["owner"] == ks.project_ids["alpha"]
        r = requests.delete(f"{edge.endpoint}/v2/images/{r.json()['id']}", headers=auth(alice))
        assert r.status_code == 204, r.text


def test_an_unscoped_token_reads_nothing(site, world):
    """A valid token without a project (unscoped: no roles) may not read images under
    Glance's secure-RBAC defaults: the list is a 403, an image a 404. The edge reading as
    its service user (who sees everything) served public images to it."""
    ks, central = site["keystone"], site["central"]
    ids, _ = world
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "alice", "domain": {"id": "default"}, "password": ks.users["alice"].password}}}}}
    unscoped = peers._http_json("POST", f"{ks.auth_url}/auth/tokens", body)[0]["X-Subject-Token"]
    h = {**auth(unscoped), "Accept": "application/json"}
    for edge in (site["edge_c"], site["edge_s"]):
        for path in ("/v2/images", f"/v2/images/{ids['public']}", f"/v2/images/{ids['public']}/file"):
            want = requests.get(central.endpoint + path, headers=h)
            got = requests.get(edge.endpoint + path, headers=h)
            assert want.status_code in (403, 404), (path, want.status_code, want.text)
            assert (got.status_code, got.text) == (want.status_code, want.text), (edge.endpoint, path)
        # An image it could not see anyway: 404 too (Glance words it "No image found").
        for path in (f"/v2/images/{ids['alpha']}", f"/v2/images/{ids['alpha']}/file"):
            assert requests.get(central.endpoint + path, headers=h).status_code == 404
            assert requests.get(edge.endpoint + path, headers=h).status_code == 404


def test_an_https_keystone_signed_by_the_edges_ca_file(site, world, workdir):
    """Keystone behind TLS with a private CA: the edge's `ca_file` (which it trusts for
    the central) is trusted for Keystone too, so validations work instead of every
    request meeting a 503."""
    from test_ops import tls_front
    ks = site["keystone"]
    ids, data = world
    proc, endpoint, ca = tls_front(workdir / "keystone-tls", ks.port)
    edge = peers.GlanceEdge(workdir / "glance-keystone" / "edge-tls", site["central"].endpoint)
    try:
        password = workdir / "glance-keystone" / "edge-password"
        edge.identity = "keystone"
        edge.extra_toml = (
            f'ca_file = "{ca}"\n'
            "\n[keystone]\n"
            f'auth_url = "{endpoint}/v3"\n'
            'username = "stackfed-edge"\n'
            f'password_file = "{password}"\n'
        )
        edge.start(peers.cargo_bin("glance-edge-cache"))
        alice = ks.token("alice")
        r = requests.get(f"{edge.endpoint}/v2/images/{ids['alpha']}/file", headers=auth(alice))
        assert r.status_code == 200 and r.content == data["alpha"], (r.status_code, r.text, edge.log()[-2000:])
        r = requests.get(edge.endpoint + "/v2/images", headers=auth("gAAAAAnot-a-token"))
        assert r.status_code == 401, r.text
    finally:
        edge.stop()
        proc.stop()


def test_keystone_down_a_new_token_gets_the_centrals_answer(site, world):
    """Keystone stopped (connection refused), the central Glance up: a token the edge never
    validated gets what the central answers then. Glance ships its paste file with
    auth_token's `delay_auth_decision = true`, so a token Keystone cannot check is an
    invalid one: 401 with the same page (measured: not auth_token's own 503). With Keystone
    back, the new token works (without restarting the edge)."""
    ks, central, edge = site["keystone"], site["central"], site["edge_c"]
    fresh = ks.token("rita")
    ks.stop()
    try:
        time.sleep(1)
        wrong = []
        for accept in ("*/*", "application/json", "text/html", None):
            h = {**auth(fresh), **({"Accept": accept} if accept else {})}
            want = requests.get(central.endpoint + "/v2/images", headers=h, timeout=120)
            got = requests.get(edge.endpoint + "/v2/images", headers=h, timeout=120)
            assert want.status_code == 401, (want.status_code, want.text)
            if (got.status_code, got.headers.get("Content-Type"), got.text,
                    got.headers.get("WWW-Authenticate")) != (
                    want.status_code, want.headers.get("Content-Type"), want.text,
                    want.headers.get("WWW-Authenticate")):
                wrong.append((accept, want.status_code, want.text, got.status_code, got.text))
        assert not wrong, "\n".join(map(repr, wrong))
        # (alice's validated token is not checked here: the central is up, so the edge
        # forwards it, and the central's own answer then depends on which of its workers
        # cached the validation; test_with_the_central_site_down covers it offline.)
    finally:
        ks.restart()
    deadline = time.monotonic() + 30  # the edge asks Keystone again after retry_seconds
    while True:
        r = requests.get(edge.endpoint + "/v2/images", headers=auth(fresh))
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert r.status_code == 200, r.text


# Last: it stops the central Glance.
def test_with_the_central_site_down(site, world, tmp_path):
    """Central Glance stopped and central Keystone frozen: tokens the edge validated
    before keep working (and rules still hold); an edge-site Keystone serves new logins
    (openstack CLI via its catalog) at the edge that validates with it."""
    ks, central, edge_c, edge_e = site["keystone"], site["central"], site["edge_c"], site["edge_e"]
    ids, data = world
    alice, bob = ks.token("alice"), ks.token("bob")
    # Online: both edges learn the images (metadata, members, data) as their users read.
    for edge in (edge_c, edge_e):
        for token, kinds in ((alice, ("alpha", "shared", "public")), (bob, ("shared", "public", "beta"))):
            r = requests.get(edge.endpoint + "/v2/images", headers=auth(token))
            assert r.status_code == 200, (edge.endpoint, r.text, edge.log()[-3000:])
            for kind in kinds:
                r = requests.get(f"{edge.endpoint}/v2/images/{ids[kind]}/file", headers=auth(token))
                assert r.status_code == 200 and r.content == data[kind], (kind, r.status_code)
    central.stop()
    os.killpg(ks.proc.pid, signal.SIGSTOP)
    try:
        # A validated token keeps working past cache_seconds (Keystone unreachable).
        time.sleep(2.5)
        listed = requests.get(edge_c.endpoint + "/v2/images", headers=auth(alice))
        assert listed.status_code == 200, listed.text
        assert listed.headers.get("X-Edge-Stale") == "true"
        got = {i["id"] for i in listed.json()["images"]}
        assert got == {ids["alpha"], ids["shared"], ids["public"]}, got
        # glance image-download with the token, straight at the edge.
        target = tmp_path / "alpha.img"
        out = subprocess.run([GLANCE, "--os-image-url", edge_c.endpoint, "--os-auth-token", alice,
                              "image-download", "--file", str(target), ids["alpha"]],
                             capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
        assert out.returncode == 0, out.stderr[-2000:]
        assert target.read_bytes() == data["alpha"]
        # Offline the edge decides the same way: bob never sees alpha's private image.
        r = requests.get(f"{edge_c.endpoint}/v2/images/{ids['alpha']}", headers=auth(bob))
        assert r.status_code == 404, r.text
        # A token never validated cannot be checked: 401 as the central answers with its
        # Keystone unreachable (test_keystone_down_a_new_token_gets_the_centrals_answer),
        # never 500.
        fresh = site["edge_ks"].token("rita")
        r = requests.get(edge_c.endpoint + "/v2/images", headers=auth(fresh))
        assert r.status_code == 401, r.text
        # The edge-site Keystone: a new login there, through its catalog, to the edge that
        # validates with it (region Edge2).
        env = site["edge_ks"].os_env("bob")
        out = cli([OPENSTACK, "image", "list", "-f", "json"], env, region="Edge2")
        assert out.returncode == 0, out.stderr[-3000:]
        assert {i["ID"] for i in json.loads(out.stdout)} == {ids["shared"], ids["public"], ids["beta"]}
        target = tmp_path / "beta.img"
        out = cli([OPENSTACK, "image", "save", "--file", str(target), ids["beta"]], env, region="Edge2")
        assert out.returncode == 0, out.stderr[-2000:]
        assert target.read_bytes() == data["beta"]
        show = cli([OPENSTACK, "image", "show", ids["alpha"]], env, region="Edge2")
        assert show.returncode != 0
        r = requests.get(edge_e.endpoint + "/v2/images", headers=auth("gAAAAAnot-a-token"))
        assert r.status_code == 401, r.text
    finally:
        os.killpg(ks.proc.pid, signal.SIGCONT)

"""Swift federation with Keystone: a real Keystone, two Swift clusters running authtoken +
keystoneauth against it, and our proxy in Keystone mode in front of them, registered in
Keystone's catalog as the object-store. Real clients log in at Keystone and reach the
proxy through the catalog: python-swiftclient (`swift --auth-version 3`), the
`openstack` CLI and openstacksdk. Expected refusals are the clusters' own (Swift's
keystoneauth), seen through the proxy."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

import peers

CLI_TIMEOUT = 180


@pytest.fixture(scope="module")
def ks_clusters(workdir, keystone):
    cs = peers.start_clusters(workdir / "swift-ks", ["east", "west"], keystone=keystone)
    yield {c.name: c for c in cs}
    for c in cs:
        c.teardown()


@pytest.fixture(scope="module")
def ks_proxy(workdir, keystone, ks_clusters, proxy_binary):
    """The proxy in Keystone mode; its own password comes from the environment, its
    registry is a Swift store on east in its own (service) project's account. Its
    auth_url is Keystone's root, as keystonemiddleware's `auth_url` is written (the
    proxy uses its /v3)."""
    p = peers.FederationProxy(
        workdir / "proxy-ks", list(ks_clusters.values()),
        policy_toml='kind = "rendezvous"\n',
        store=f'{{ kind = "swift", endpoint = "{ks_clusters["east"].endpoint}", settle_ms = 50 }}',
        auth_toml=('{ kind = "keystone", auth_url = "%s", user = "stackfed", '
                   'password = { env = "STACKFED_KEYSTONE_PASSWORD" }, project = "service" }'
                   % keystone.endpoint),
        env={"STACKFED_KEYSTONE_PASSWORD": keystone.users["stackfed"].password},
    )
    p.start(proxy_binary)
    keystone.add_endpoint("object-store", "swift", f"{p.endpoint}/v1/AUTH_%(project_id)s")
    yield p
    p.stop()


def account(keystone, project):
    return f"AUTH_{keystone.project_ids[project]}"


def call(method, url, token=None, data=None, headers=None):
    """One request; returns (status, headers, body) for any status."""
    h = dict(headers or {})
    if token:
        h["X-Auth-Token"] = token
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def swift_cli(keystone, user, *args, project=None):
    spec = keystone.users[user]
    argv = [str(peers.VENV_BIN / "swift"), "--os-auth-url", keystone.auth_url, "--auth-version", "3",
            "--os-username", user, "--os-password", spec.password,
            "--os-project-name", project or next(iter(spec.roles)),
            "--os-user-domain-id", "default", "--os-project-domain-id", "default", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


def openstack(keystone, user, *args, project=None):
    argv = [str(peers.VENV_BIN / "openstack"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT,
                          env={**keystone.os_env(user, project),
                               "PATH": os.environ.get("PATH", "/usr/bin:/bin")})


def test_swift_cli_v3_reaches_the_proxy_through_the_catalog(keystone, ks_clusters, ks_proxy, tmp_path):
    r = swift_cli(keystone, "alice", "auth")
    assert r.returncode == 0, r.stderr
    # The catalog's object-store endpoint is the proxy, for alice's project.
    assert f"{ks_proxy.endpoint}/v1/{account(keystone, 'alpha')}" in r.stdout, r.stdout
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello from alpha\n")
    token = keystone.token("alice")

    def holders(name):
        """The clusters holding container `name` in AUTH_<alpha> (a HEAD on each: the
        account listing may lag behind under load)."""
        out = []
        for c in ks_clusters.values():
            s, _, body = call("HEAD", f"{c.endpoint}/v1/{account(keystone, 'alpha')}/{name}", token)
            assert s in (204, 404), (c.name, s, body)
            if s == 204:
                out.append(c.name)
        return out

    # Rendezvous placement of random names: a fixed count leaves one cluster empty now
    # and then (6 names once in 32 runs, as in a CI run; 12 once in 2,048). Names are
    # uploaded until both clusters hold one: at least 4, at most 40 (once in 5e11).
    placed = {}
    while len(placed) < 4 or (set(placed.values()) != {"east", "west"} and len(placed) < 40):
        n = f"cli-{uuid.uuid4().hex[:6]}-{len(placed)}"
        r = swift_cli(keystone, "alice", "upload", "--object-name", "hello.txt", n, str(src))
        assert r.returncode == 0, r.stderr
        on = holders(n)
        # Each on exactly one cluster, in AUTH_<alpha> there.
        assert len(on) == 1, (n, on)
        placed[n] = on[0]
    names = list(placed)
    r = swift_cli(keystone, "alice", "list")
    assert r.returncode == 0, r.stderr
    assert set(names) <= set(r.stdout.split()), r.stdout
    # Placement spread them over both clusters.
    assert set(placed.values()) == {"east", "west"}, placed
    out = tmp_path / "back.txt"
    r = swift_cli(keystone, "alice", "download", names[0], "hello.txt", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == b"hello from alpha\n"


def test_openstack_cli_objects(keystone, ks_proxy, tmp_path):
    c = f"osc-{uuid.uuid4().hex[:6]}"
    r = openstack(keystone, "bob", "container", "create", c, "-f", "json")
    assert r.returncode == 0, r.stderr
    f = tmp_path / "data.bin"
    f.write_bytes(os.urandom(4096))
    r = openstack(keystone, "bob", "object", "create", c, str(f), "--name", "data.bin", "-f", "json")
    assert r.returncode == 0, r.stderr
    r = openstack(keystone, "bob", "object", "list", c, "-f", "json")
    assert r.returncode == 0, r.stderr
    assert [o["Name"] for o in json.loads(r.stdout)] == ["data.bin"]
    out = tmp_path / "saved.bin"
    r = openstack(keystone, "bob", "object", "save", c, "data.bin", "--file", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == f.read_bytes()
    r = openstack(keystone, "bob", "container", "list", "-f", "json")
    assert r.returncode == 0, r.stderr
    listed = {x["Name"] for x in json.loads(r.stdout)}
    assert c in listed
    assert not any(n.startswith("cli-") for n in listed), "alpha's containers are not beta's"


def test_openstacksdk_object_store_and_summed_usage(keystone, ks_clusters, ks_proxy):
    import openstack
    env = keystone.os_env("admin", "alpha")
    conn = openstack.connect(
        auth_url=env["OS_AUTH_URL"], username="admin", password=env["OS_PASSWORD"],
        project_name="alpha", user_domain_id="default", project_domain_id="default",
        region_name=keystone.region, interface="public", identity_api_version="3")
    try:
        assert conn.object_store.get_endpoint().startswith(ks_proxy.endpoint)
        names = [f"sdk-{uuid.uuid4().hex[:6]}-{i}" for i in range(4)]
        for n in names:
            conn.object_store.create_container(name=n)
            conn.object_store.upload_object(container=n, name="blob", data=b"x" * 1000)
        assert conn.object_store.download_object("blob", container=names[0]) == b"x" * 1000
        listed = {c.name for c in conn.object_store.containers()}
        assert set(names) <= listed
        # The account's usage, summed over both clusters, equals the sum of what each
        # cluster reports for AUTH_<alpha> (the container updater lags: wait for it).
        token = keystone.token("alice")
        deadline = time.monotonic() + 60
        while True:
            per_cluster = []
            for c in ks_clusters.values():
                s, h, _ = call("HEAD", f"{c.endpoint}/v1/{account(keystone, 'alpha')}", token)
                assert s in (200, 204), s
                per_cluster.append((int(h["X-Account-Container-Count"]),
                                    int(h["X-Account-Object-Count"]), int(h["X-Account-Bytes-Used"])))
            acct = conn.object_store.get_account_metadata()
            s, h, _ = call("HEAD", f"{ks_proxy.endpoint}/v1/{account(keystone, 'alpha')}", token)
            summed = tuple(map(sum, zip(*per_cluster)))
            proxy_view = (int(h["X-Account-Container-Count"]), int(h["X-Account-Object-Count"]),
                          int(h["X-Account-Bytes-Used"]))
            if proxy_view == summed and all(p[1] for p in per_cluster) and summed[2] >= 4000:
                break
            assert time.monotonic() < deadline, (proxy_view, per_cluster)
            time.sleep(1)
        assert acct.account_bytes_used is not None
    finally:
        conn.close()


def test_a_token_of_another_project_is_refused(keystone, ks_proxy):
    alice = keystone.token("alice")
    bob = keystone.token("bob")
    alpha = f"{ks_proxy.endpoint}/v1/{account(keystone, 'alpha')}"
    c = f"private-{uuid.uuid4().hex[:6]}"
    assert call("PUT", f"{alpha}/{c}", alice)[0] == 201
    assert call("PUT", f"{alpha}/{c}/secret", alice, b"alpha only")[0] == 201
    # Bob (member of beta) gets nothing of alpha: account, container, object, writes.
    for method, url, data in [("GET", alpha, None), ("HEAD", alpha, None),
                              ("GET", f"{alpha}/{c}", None), ("HEAD", f"{alpha}/{c}", None),
                              ("GET", f"{alpha}/{c}/secret", None),
                              ("PUT", f"{alpha}/{c}/planted", b"x"),
                              ("POST", f"{alpha}/{c}", None),
                              ("DELETE", f"{alpha}/{c}/secret", None),
                              ("PUT", f"{alpha}/bobs-{c}", None)]:
        s, _, body = call(method, url, bob, data)
        assert s == 403, (method, url, s, body)
    # A token of nobody: 401.
    assert call("GET", f"{alpha}/{c}/secret", "not-a-token")[0] == 401
    # Nothing bob tried left a trace in alpha.
    s, _, body = call("GET", f"{alpha}?format=json", alice)
    assert s == 200
    names = {x["name"] for x in json.loads(body)}
    assert c in names and f"bobs-{c}" not in names
    s, _, body = call("GET", f"{alpha}/{c}/secret", alice)
    assert (s, body) == (200, b"alpha only")
    assert call("HEAD", f"{alpha}/{c}/planted", alice)[0] == 404


def test_a_reader_reads_and_cannot_write(keystone, ks_proxy):
    alice = keystone.token("alice")
    rita = keystone.token("rita")
    alpha = f"{ks_proxy.endpoint}/v1/{account(keystone, 'alpha')}"
    c = f"shared-{uuid.uuid4().hex[:6]}"
    assert call("PUT", f"{alpha}/{c}", alice)[0] == 201
    assert call("PUT", f"{alpha}/{c}/doc", alice, b"read me")[0] == 201
    assert call("GET", f"{alpha}/{c}/doc", rita)[:3:2] == (200, b"read me")
    s, _, body = call("GET", f"{alpha}?format=json", rita)
    assert s == 200 and c in {x["name"] for x in json.loads(body)}
    assert call("GET", f"{alpha}/{c}", rita)[0] == 200
    for method, url, data in [("PUT", f"{alpha}/{c}/new", b"x"), ("DELETE", f"{alpha}/{c}/doc", None),
                              ("POST", f"{alpha}/{c}", None), ("PUT", f"{alpha}/rita-{c}", None)]:
        s, _, body = call(method, url, rita, data)
        assert s == 403, (method, url, s, body)
    assert call("GET", f"{alpha}/{c}/doc", alice)[:3:2] == (200, b"read me")
    r = swift_cli(keystone, "rita", "list", c)
    assert r.returncode == 0 and r.stdout.split() == ["doc"], (r.stdout, r.stderr)


def test_the_registry_is_kept_with_the_proxys_own_identity(keystone, ks_clusters, ks_proxy):
    """The Swift-backed store lives in the proxy's service project's account on east,
    written with the proxy's Keystone token: a member of alpha cannot read it, and it
    holds a record of alpha's containers under AUTH_<alpha>."""
    alice = keystone.token("alice")
    c = f"rec-{uuid.uuid4().hex[:6]}"
    assert call("PUT", f"{ks_proxy.endpoint}/v1/{account(keystone, 'alpha')}/{c}", alice)[0] == 201
    registry = f"{ks_clusters['east'].endpoint}/v1/{account(keystone, 'service')}/federation-registry"
    s, _, body = call("GET", f"{registry}?format=json", keystone.token("stackfed", "service"))
    assert s == 200, (s, body)
    names = [x["name"] for x in json.loads(body)]
    assert f"{account(keystone, 'alpha')}/{c.encode().hex()}" in names, names
    assert call("GET", registry, alice)[0] == 403
    # Container creations the clusters refused (bob's and rita's in alpha) left no record.
    alpha_records = [bytes.fromhex(n.split("/", 1)[1]).decode() for n in names
                     if n.startswith(account(keystone, "alpha") + "/")]
    assert not [n for n in alpha_records if n.startswith(("bobs-", "rita-"))], alpha_records
    # No /auth/v1.0 with Keystone: clients log in at Keystone.
    assert call("GET", f"{ks_proxy.endpoint}/auth/v1.0")[0] == 404

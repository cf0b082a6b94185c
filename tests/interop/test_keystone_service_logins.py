"""The services' own Keystone logins against a REAL Keystone whose tokens live one minute
(`[token] expiration = 60`; Keystone's minimum is 0): the federation proxy's token (its
Swift-backed registry on a Keystone-protected cluster) and the edge's service token
(validating callers' tokens) are renewed and keep working past the first token's expiry,
with the logins counted on each one's metrics listener
(`stackfed_keystone_logins_total{identity, outcome}`); and both log in with an
application credential of their service user (made here with Keystone's API, as
`openstack application credential create` does), and once it is deleted they refuse
clearly (503, a log line saying Keystone refused the credentials) rather than hang.

A Keystone of its own (not the session's): a one-minute token expiry would break the
other suites' long-lived fixtures."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
import urllib.error
import urllib.request

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import peers

LIFETIME = 60


def call(method, url, token=None, data=None):
    """One request; returns (status, body) for any status."""
    h = {"X-Auth-Token": token} if token else {}
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def logins(metrics_url, identity, outcome="ok"):
    """stackfed_keystone_logins_total{identity, outcome} (0 when never counted)."""
    r = requests.get(metrics_url + "/metrics", timeout=5)
    assert r.status_code == 200, r.text
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            if (s.name == "stackfed_keystone_logins_total" and s.labels.get("identity") == identity
                    and s.labels.get("outcome") == outcome):
                return s.value
    return 0


def validations(ks):
    """Token validations Keystone served so far (its access log)."""
    log = ks.base / "access.log"
    return sum('"GET /v3/auth/tokens ' in line for line in log.read_text(errors="replace").splitlines())


def proxy_with(base, ks, cluster, auth_toml, env, container):
    """A proxy in Keystone mode over `cluster`, its registry the Swift container
    `container` in its own project's account, with a metrics listener."""
    metrics = peers.free_port()
    p = peers.FederationProxy(
        base, [cluster], policy_toml='kind = "rendezvous"\n',
        store=(f'{{ kind = "swift", endpoint = "{cluster.endpoint}", settle_ms = 50, '
               f'container = "{container}" }}'),
        auth_toml=auth_toml, env=env,
        extra_toml=f'metrics_listen = "127.0.0.1:{metrics}"\n')
    p.metrics = f"http://127.0.0.1:{metrics}"
    return p


def edge_with(base, ks, central, keystone_toml, cache_seconds=1):
    metrics = peers.free_port()
    e = peers.GlanceEdge(base, central.endpoint, identity="keystone")
    e.extra_toml = (f'metrics_listen = "127.0.0.1:{metrics}"\n'
                    "\n[keystone]\n"
                    f'auth_url = "{ks.auth_url}"\n'
                    f"cache_seconds = {cache_seconds}\n"
                    "timeout_seconds = 2\n" + keystone_toml)
    e.metrics = f"http://127.0.0.1:{metrics}"
    return e


class Teardown:
    """Stops a Swift cluster as the other peers stop."""

    def __init__(self, cluster):
        self.cluster = cluster

    def stop(self):
        self.cluster.teardown()


@pytest.fixture(scope="module")
def short(workdir, proxy_binary):
    """A Keystone with one-minute tokens, one Swift cluster behind it, a no-auth central
    Glance, and a proxy and an edge logging in with passwords."""
    base = workdir / "keystone-short"
    ks = peers.Keystone(base / "keystone", token_expiration=LIFETIME)
    started = []
    try:
        ks.start()
        started.append(ks)
        clusters = peers.start_clusters(base / "swift", ["solo"], keystone=ks)
        cluster = clusters[0]
        started.append(Teardown(cluster))
        central = peers.GlanceCentral(base / "central")
        central.start()
        started.append(central)
        proxy = proxy_with(
            base / "proxy", ks, cluster,
            ('{ kind = "keystone", auth_url = "%s", user = "stackfed", '
             'password = { env = "STACKFED_KEYSTONE_PASSWORD" }, project = "service" }' % ks.auth_url),
            {"STACKFED_KEYSTONE_PASSWORD": ks.users["stackfed"].password}, "federation-registry")
        proxy.start(proxy_binary)
        started.append(proxy)
        password = base / "edge-password"
        password.write_text(ks.users["stackfed-edge"].password + "\n")
        edge = edge_with(base / "edge", ks, central,
                         f'username = "stackfed-edge"\npassword = {{ file = "{password}" }}\n')
        edge.start(peers.cargo_bin("glance-edge-cache"))
        started.append(edge)
        yield {"ks": ks, "cluster": cluster, "central": central, "proxy": proxy, "edge": edge,
               "base": base}
    finally:
        for p in reversed(started):
            p.stop()


def account(ks, project):
    return f"AUTH_{ks.project_ids[project]}"


def registry_names(ks, cluster, container):
    """The registry's object names (read with a fresh token of the proxy's user)."""
    token = ks.token("stackfed", "service")
    s, body = call("GET", f"{cluster.endpoint}/v1/{account(ks, 'service')}/{container}", token)
    assert s in (200, 204), (s, body)
    return body.decode().split()


def test_own_tokens_are_renewed_past_the_first_expiry(short):
    ks, proxy, edge, cluster = short["ks"], short["proxy"], short["edge"], short["cluster"]
    started = time.monotonic()
    made = []
    # Every 5 s, past the first tokens' expiry: alice (a fresh token each time: hers live a
    # minute too) creates a container through the proxy, which records it in its
    # registry with its own token, and lists images through the edge, which validates
    # her token with its service token (cache_seconds = 1: asked each time).
    while True:
        token = ks.token("alice")
        name = f"renew-{len(made)}-{uuid.uuid4().hex[:6]}"
        s, body = call("PUT", f"{proxy.endpoint}/v1/{account(ks, 'alpha')}/{name}", token)
        elapsed = time.monotonic() - started
        assert s in (201, 202), (elapsed, s, body, proxy.log())
        made.append(name)
        r = requests.get(edge.endpoint + "/v2/images", headers={"X-Auth-Token": token}, timeout=30)
        assert r.status_code == 200, (elapsed, r.status_code, r.text, edge.log())
        if elapsed > LIFETIME + 20:
            break
        time.sleep(5)
    # A token the edge has not seen, and a bad one, are still told apart.
    r = requests.get(edge.endpoint + "/v2/images", headers={"X-Auth-Token": "bogus"}, timeout=30)
    assert r.status_code == 401
    # Every container is in the registry (written with the proxy's renewed tokens).
    names = registry_names(ks, cluster, "federation-registry")
    alpha = [n for n in names if n.startswith(account(ks, "alpha") + "/")]
    assert len(alpha) >= len(made), (len(alpha), len(made), names)
    # Renewed, but not per request: with one-minute tokens, half-way (every 30 s):
    # 3-4 logins in 80 s, against more than 16 requests needing a token each.
    for m, identity in ((proxy.metrics, "proxy"), (edge.metrics, "edge")):
        ok = logins(m, identity)
        assert 2 <= ok <= 5, (identity, ok)
        assert logins(m, identity, "failed") == 0, identity
    print(f"\n{len(made)} rounds over {time.monotonic() - started:.0f}s: proxy logins "
          f"{logins(proxy.metrics, 'proxy'):.0f}, edge logins {logins(edge.metrics, 'edge'):.0f}")


def start_unready(p, binary):
    """Starts proxy `p` expecting its /healthcheck to say it is not ready; returns why."""
    conf = p.write_config()
    p.port = peers.free_port()
    p.proc = peers.spawn(
        "federation-proxy",
        [str(binary), "--config", str(conf), "--listen", f"127.0.0.1:{p.port}"],
        p.base / "proxy.log", env={"RUST_LOG": "info", **p.env})
    deadline = time.monotonic() + 30
    last = None
    while time.monotonic() < deadline:
        try:
            s, body = call("GET", p.endpoint + "/healthcheck")
            last = (s, body)
            if s == 503:
                return body.decode()
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the proxy never said it was not ready: {last}\n{p.log()}")


def app_credential(ks, user):
    """A new application credential of `user` (in its service project): (id, secret,
    a function that deletes it)."""
    token, body = ks.authenticate(user, "service")
    uid = body["user"]["id"]
    _, made = peers._http_json(
        "POST", f"{ks.auth_url}/users/{uid}/application_credentials",
        {"application_credential": {"name": f"{user}-{uuid.uuid4().hex[:6]}",
                                    "description": "stackfed interop"}}, token)
    ac = made["application_credential"]

    def delete():
        fresh = ks.token(user, "service")
        req = urllib.request.Request(
            f"{ks.auth_url}/users/{uid}/application_credentials/{ac['id']}", method="DELETE",
            headers={"X-Auth-Token": fresh})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 204

    return ac["id"], ac["secret"], delete


def test_application_credentials_log_in_and_a_deleted_one_is_refused_clearly(
        short, proxy_binary):
    ks, cluster, central, base = short["ks"], short["cluster"], short["central"], short["base"]
    edge_binary = peers.cargo_bin("glance-edge-cache")
    proxy_id, proxy_secret, delete_proxy_ac = app_credential(ks, "stackfed")
    edge_id, edge_secret, delete_edge_ac = app_credential(ks, "stackfed-edge")
    secret_file = base / "edge-app-cred"
    secret_file.write_text(edge_secret + "\n")
    proxy = proxy_with(
        base / "proxy-ac", ks, cluster,
        ('{ kind = "keystone", auth_url = "%s", application_credential_id = "%s", '
         'application_credential_secret = { env = "STACKFED_AC_SECRET" } }' % (ks.auth_url, proxy_id)),
        {"STACKFED_AC_SECRET": proxy_secret}, "federation-registry-ac")
    edge = edge_with(base / "edge-ac", ks, central,
                     f'application_credential_id = "{edge_id}"\n'
                     f'application_credential_secret = {{ file = "{secret_file}" }}\n',
                     cache_seconds=300)
    try:
        proxy.start(proxy_binary)
        edge.start(edge_binary)
        token = ks.token("alice")
        s, body = call("PUT", f"{proxy.endpoint}/v1/{account(ks, 'alpha')}/ac-{uuid.uuid4().hex[:6]}", token)
        assert s in (201, 202), (s, body, proxy.log())
        assert any(n.startswith(account(ks, "alpha") + "/")
                   for n in registry_names(ks, cluster, "federation-registry-ac"))
        r = requests.get(edge.endpoint + "/v2/images", headers={"X-Auth-Token": token}, timeout=30)
        assert r.status_code == 200, (r.text, edge.log())
        assert logins(proxy.metrics, "proxy") == 1
        assert logins(edge.metrics, "edge") == 1

        # 100 concurrent requests with a token the edge has not seen: one validation
        # (GET /v3/auth/tokens in Keystone's access log), one answer for all.
        fresh = ks.token("bob")
        before = validations(ks)
        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(lambda _: requests.get(
                edge.endpoint + "/v2/images", headers={"X-Auth-Token": fresh}, timeout=60).status_code,
                range(100)))
        assert codes == [200] * 100, codes
        assert peers.settled_count(lambda: validations(ks) - before) == 1
        assert logins(edge.metrics, "edge") == 1

        # Deleted: a restarted proxy and edge cannot log in. The proxy says it is not
        # ready, and why; both answer requests at once, 503, and say why in their logs.
        delete_proxy_ac()
        delete_edge_ac()
        proxy.stop()
        edge.stop()
        why = start_unready(proxy, proxy_binary)
        # Keystone's own words for a deleted application credential (measured: 404).
        refused = "Keystone refused the credentials (404 Not Found): Could not find Application Credential"
        assert refused in why, why
        edge.start(edge_binary)
        token = ks.token("alice")
        t0 = time.monotonic()
        s, body = call("PUT", f"{proxy.endpoint}/v1/{account(ks, 'alpha')}/ac-{uuid.uuid4().hex[:6]}", token)
        assert s == 503, (s, body, proxy.log())
        r = requests.get(edge.endpoint + "/v2/images", headers={"X-Auth-Token": token}, timeout=30)
        assert r.status_code == 503, (r.status_code, r.text)
        assert "Keystone service is temporarily unavailable" in r.text, r.text
        assert time.monotonic() - t0 < 10, "a refusal, not a hang"
        assert refused in proxy.log(), proxy.log()
        assert "Keystone refused the edge's service user: " + refused in edge.log(), edge.log()
        assert logins(proxy.metrics, "proxy", "failed") >= 1
        assert logins(edge.metrics, "edge", "failed") >= 1
    finally:
        proxy.stop()
        edge.stop()

"""Bulk delete (`POST ?bulk-delete`) through the federation, with the real `swift` CLI
and raw HTTP, compared with what one real Swift cluster running the bulk middleware
answers.

The module starts its own federation (two clusters with the plain pipeline, no bulk
middleware: the proxy does bulk deletes itself) and a reference cluster with the SAIO
pipeline, so that `swift delete --all` empties an account no other test uses."""

import http.client
import json
import re
import subprocess
import urllib.parse
import uuid

import pytest
import requests
from swiftclient import client as swc
from swiftclient.exceptions import ClientException

import peers

USER, KEY = "test:tester", "testing"


def conn(auth_url):
    return swc.Connection(authurl=auth_url, user=USER, key=KEY, retries=0)


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def bulk_fed(workdir, proxy_binary):
    """Two clusters without the bulk middleware and a proxy in front of them."""
    cs = peers.start_clusters(workdir / "bulk-swift", ["east", "west"])
    p = peers.FederationProxy(workdir / "bulk-proxy", cs)
    try:
        p.start(proxy_binary)
        yield p, {c.name: c for c in cs}
    finally:
        p.stop()
        for c in cs:
            c.teardown()


@pytest.fixture(scope="module")
def reference(workdir):
    """One real cluster with the bulk middleware (the SAIO pipeline)."""
    (c,) = peers.start_clusters(workdir / "bulk-ref", ["ref"], full_pipeline=True)
    yield c
    c.teardown()


def pinned(cluster):
    return {"X-Container-Attr-Cluster": cluster} if cluster else {}


def cli(proxy, *args):
    swift = [str(peers.VENV_BIN / "swift"), "-A", proxy.auth_url, "-U", USER, "-K", KEY]
    return subprocess.run(swift + list(args), capture_output=True, text=True, timeout=120)


def holds(cluster, container):
    try:
        conn(cluster.auth_url).head_container(container)
        return True
    except ClientException as e:
        assert e.http_status == 404, e
        return False


def has_record(fed, container, cluster):
    """Whether the proxy still records `container` (on `cluster`): creating it again
    pinned to the other cluster is refused while a record says where it lives."""
    other = {"east": "west", "west": "east"}[cluster]
    try:
        fed.put_container(container, headers=pinned(other))
    except ClientException as e:
        assert e.http_status == 409, e
        return True
    fed.delete_container(container)
    return False


def test_swift_delete_of_a_container_with_50_objects(bulk_fed):
    proxy, clusters = bulk_fed
    fed = conn(proxy.auth_url)
    # The federation holds containers on both clusters; the one deleted is on west.
    keep, gone = uniq("keep"), uniq("gone")
    fed.put_container(keep, headers=pinned("east"))
    fed.put_object(keep, "k", b"k")
    fed.put_container(gone, headers=pinned("west"))
    names = [f"obj {i:02d}/ü" for i in range(50)]
    for n in names:
        fed.put_object(gone, n, b"x")
    # More than 20 objects and bulk_delete in /info: the CLI deletes in bulk.
    assert "bulk_delete" in fed.get_capabilities()
    out = cli(proxy, "delete", gone)
    assert out.returncode == 0, out.stderr
    assert "Account POST failed" not in out.stderr
    printed = set(out.stdout.splitlines())
    assert set(names) <= printed, out.stdout
    west = conn(clusters["west"].auth_url)
    with pytest.raises(ClientException) as e:
        west.get_container(gone)
    assert e.value.http_status == 404
    assert not holds(clusters["east"], gone)
    assert not has_record(fed, gone, "west")
    # Nothing else was touched.
    assert [o["name"] for o in fed.get_container(keep)[1]] == ["k"]
    assert cli(proxy, "delete", keep).returncode == 0


def test_swift_delete_all_empties_every_cluster(bulk_fed):
    proxy, clusters = bulk_fed
    fed = conn(proxy.auth_url)
    made = []
    for i, where in enumerate(["east", "west", "east", "west"]):
        c = uniq(f"all{i}")
        fed.put_container(c, headers=pinned(where))
        for j in range(25 if i < 2 else 3):
            fed.put_object(c, f"o{j}", b"x")
        made.append((c, where))
    out = cli(proxy, "delete", "--all")
    assert out.returncode == 0, out.stderr
    assert fed.get_account(full_listing=True)[1] == []
    for c in clusters.values():
        assert conn(c.auth_url).get_account(full_listing=True)[1] == [], c.name
    for c, where in made:
        assert not has_record(fed, c, where)


def layout(url, token, tag):
    """The same containers wherever: `full` (an object stays), `empty`, `mixed` with an
    object whose name needs quoting; on the federation `full` and `empty` on west,
    `mixed` on east."""
    s = requests.Session()
    s.headers["X-Auth-Token"] = token
    names = {k: f"{k}-{tag}" for k in ("full", "empty", "mixed")}
    for k, cluster in (("full", "west"), ("empty", "west"), ("mixed", "east")):
        r = s.put(f"{url}/{names[k]}", headers=pinned(cluster))
        assert r.status_code in (201, 202), r.text
    for path in (f"{names['full']}/stays", f"{names['mixed']}/a%20b", f"{names['mixed']}/c"):
        assert s.put(f"{url}/{path}", data=b"x").status_code == 201
    return names


def mixed_list(names):
    return (
        f"/{names['mixed']}/a%20b\n/{names['mixed']}/c\n/{names['mixed']}/missing\n"
        f"/nowhere-{uuid.uuid4().hex[:6]}/o\n/{names['full']}\n/{names['empty']}\n"
        f"/{names['mixed']}\n\n/x/%FF\n"
    )


def bulk(url, token, body, accept=None, content_type="text/plain"):
    headers = {"X-Auth-Token": token, "Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    r = requests.post(f"{url}?bulk-delete", data=body, headers=headers, timeout=60)
    # Swift may send whitespace before the result while it works.
    ctype = r.headers.get("Content-Type")
    return r.status_code, ctype, errors_in_order(ctype, r.text.lstrip(" \r\n"))


def errors_in_order(ctype, text):
    """The answer with its error entries sorted. Swift's bulk middleware deletes with
    `delete_concurrency` (2) green threads and lists errors as they finish, so their order
    differs from run to run on one cluster; everything else is compared as sent."""
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


def endpoints(bulk_fed, reference):
    proxy, _ = bulk_fed
    out = []
    for auth in (reference.auth_url, proxy.auth_url):
        url, token = conn(auth).get_auth()
        out.append((url, token))
    return out


@pytest.mark.parametrize("accept", [None, "application/json", "application/xml", "text/xml"])
def test_bulk_delete_answers_as_a_real_cluster(bulk_fed, reference, accept):
    answers = []
    for url, token in endpoints(bulk_fed, reference):
        tag = uuid.uuid4().hex[:6]
        names = layout(url, token, tag)
        status, ctype, text = bulk(url, token, mixed_list(names), accept)
        # Names differ by tag only; compare with the tag taken out.
        answers.append((status, ctype, text.replace(tag, "TAG")))
        s = {"X-Auth-Token": token}
        assert requests.head(f"{url}/{names['mixed']}", headers=s).status_code == 404
        assert requests.head(f"{url}/{names['empty']}", headers=s).status_code == 404
        assert requests.head(f"{url}/{names['full']}/stays", headers=s).status_code == 200
        requests.delete(f"{url}/{names['full']}/stays", headers=s)
        requests.delete(f"{url}/{names['full']}", headers=s)
    ref, fed = answers
    assert ref[0] == 200 and "409 Conflict" in ref[2], ref
    assert fed == ref


@pytest.mark.parametrize("case", ["not-acceptable", "json-list", "empty", "too-many", "long-name",
                                  "no-token", "account-item"])
def test_bulk_delete_refusals_match_a_real_cluster(bulk_fed, reference, case):
    answers = []
    for url, token in endpoints(bulk_fed, reference):
        accept, ctype, body = "application/json", "text/plain", "/c/o\n"
        if case == "not-acceptable":
            accept = "image/png"
        elif case == "json-list":
            ctype = "application/json"
        elif case == "empty":
            body = ""
        elif case == "too-many":
            body = "/c/o\n" * 10001
        elif case == "long-name":
            body = "/c/" + "o" * 2600 + "\n"
        elif case == "no-token":
            token = "AUTH_tkbogus"
        elif case == "account-item":
            body = "/\n//\n"  # names no container: a DELETE of the account itself
        answers.append(bulk(url, token, body, accept, ctype))
    ref, fed = answers
    assert ref[0] == 200, ref
    assert fed == ref


def test_bulk_delete_without_a_length_matches_a_real_cluster(bulk_fed, reference):
    answers = []
    for url, token in endpoints(bulk_fed, reference):
        u = urllib.parse.urlsplit(url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        c.putrequest("POST", f"{u.path}?bulk-delete")
        c.putheader("X-Auth-Token", token)
        c.putheader("Accept", "application/json")
        c.endheaders()
        r = c.getresponse()
        answers.append((r.status, r.getheader("Content-Type"), r.read().decode().lstrip()))
        c.close()
    ref, fed = answers
    assert "411 Length Required" in ref[2], ref
    assert fed == ref


def test_bulk_delete_with_expect_100_continue(bulk_fed, reference, tmp_path):
    """curl sends `Expect: 100-continue` with a list over 1 KiB: the 100 must come before
    any answer, or curl holds the list back and nothing gets deleted."""
    answers = []
    for url, token in endpoints(bulk_fed, reference):
        tag = uuid.uuid4().hex[:6]
        names = layout(url, token, tag)
        lst = tmp_path / f"list-{tag}"
        lst.write_text(mixed_list(names) + "".join(f"/nowhere/o{i:04d}\n" for i in range(200)))
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "30", "-X", "POST", "--data-binary", f"@{lst}",
             "-H", "Expect: 100-continue", "-H", "Content-Type: text/plain",
             "-H", "Accept: application/json", "-H", f"X-Auth-Token: {token}",
             f"{url}?bulk-delete"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        answers.append(out.stdout.strip().replace(tag, "TAG"))
        s = {"X-Auth-Token": token}
        requests.delete(f"{url}/{names['full']}/stays", headers=s)
        requests.delete(f"{url}/{names['full']}", headers=s)
    ref, fed = answers
    assert '"Number Deleted": 4' in ref, ref
    assert fed == ref

"""The Keystone peer itself: projects, users, roles and catalog as the other Keystone
suites expect them, seen through real clients (HTTP and python-openstackclient)."""

import json
import subprocess
import urllib.error

import pytest

import peers


def test_roles_per_project(keystone):
    _, alice = keystone.authenticate("alice")
    assert alice["project"]["id"] == keystone.project_ids["alpha"]
    assert "member" in {r["name"] for r in alice["roles"]}
    _, rita = keystone.authenticate("rita")
    assert {r["name"] for r in rita["roles"]} == {"reader"}
    _, proxy = keystone.authenticate("stackfed", "service")
    assert {"service", "ResellerAdmin"} <= {r["name"] for r in proxy["roles"]}
    # Bob is no member of alpha: Keystone refuses the scope.
    with pytest.raises(urllib.error.HTTPError) as e:
        keystone.authenticate("bob", "alpha")
    assert e.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as e:
        keystone.authenticate("alice", password="wrong")
    assert e.value.code == 401


def test_extra_catalog_endpoint_and_openstack_cli(keystone):
    keystone.add_endpoint("image", "glance-test", "http://127.0.0.1:9/image")
    _, body = keystone.authenticate("alice")
    image = [s for s in body["catalog"] if s["name"] == "glance-test"]
    assert image and {e["interface"] for e in image[0]["endpoints"]} == {"public", "internal", "admin"}
    out = subprocess.run(
        [str(peers.VENV_BIN / "openstack"), "token", "issue", "-f", "json"],
        env={**keystone.os_env("bob"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["project_id"] == keystone.project_ids["beta"]

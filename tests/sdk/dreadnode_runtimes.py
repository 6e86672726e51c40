"""Drives fleetledger's runtimes surface with the official dreadnode SDK's ApiClient.

Usage: python dreadnode_runtimes.py BASE_URL OWNER_KEY OTHER_MEMBER_KEY
Exits non-zero (with a traceback) on the first behaviour that differs.
"""

import sys

from dreadnode.app.api.client import (
    ApiClient,
    AuthenticationError,
    ConflictError,
    NotFoundError,
)

base_url, owner_key, other_key = sys.argv[1:4]
org, ws = "default", "default"
api = ApiClient(base_url, api_key=owner_key)

created = api.create_runtime(org, ws, "sdk-project", key="sdk-runtime", name="SDK runtime")
assert created["created"] is True and created["status"] == "idle", created
runtime_id = created["id"]

# Ensure: the same key again answers the same runtime.
again = api.create_runtime(org, ws, "sdk-project", key="sdk-runtime", name="SDK runtime")
assert again["id"] == runtime_id and again["created"] is False, again

listed = api.list_runtimes(org, ws, owner="me")
assert [r["id"] for r in listed["items"]] == [runtime_id], listed
assert listed["next_cursor"] is None
assert api.get_runtime(org, ws, "sdk-runtime")["id"] == runtime_id
assert api.get_runtime(org, ws, runtime_id.upper())["owned_by_me"] is True

config = api.get_runtime_config(org, ws, runtime_id)
assert config["config_version"] == "1" and config["materialization_stale"] is False, config

# What `dn runtime config --egress` does: read, add egress targets, replace wholesale.
base = dict(config["config"])
base["sandbox"] = {**base["sandbox"], "egress": {"allow": ["pypi.org", "*.githubusercontent.com"]}}
updated = api.update_runtime_config(org, ws, runtime_id, base)
assert updated["config_version"] == "2", updated
assert updated["config"]["sandbox"]["egress"]["allow"] == ["pypi.org", "*.githubusercontent.com"]
assert len(updated["config_digest"]) == 64

try:
    api.update_runtime_config(org, ws, runtime_id, {"resources": {"cpu_cores": 0}})
    raise AssertionError("an invalid config was accepted")
except RuntimeError as e:
    assert str(e) == "422: Validation error", str(e)

try:
    api.create_runtime(org, ws, key="sdk-runtime", config={"resources": {"cpu_cores": 8}})
    raise AssertionError("ensure with another config did not conflict")
except ConflictError as e:
    assert str(e).startswith("409: "), str(e)

started = api.start_runtime(org, ws, runtime_id)
assert started["status"] == "running" and started["instance"]["provider_sandbox_id"], started
assert api.start_runtime(org, ws, runtime_id)["instance"]["id"] == started["instance"]["id"]
assert api.pause_runtime(org, ws, runtime_id)["status"] == "paused"
assert api.resume_runtime(org, ws, runtime_id)["status"] == "running"
kept = api.keepalive_runtime(org, ws, runtime_id, extend_seconds=60)
assert kept["expires_at"] > started["expires_at"], (kept, started)
api.update_runtime_config(org, ws, runtime_id, {})
assert api.get_runtime(org, ws, runtime_id)["materialization_stale"] is True
assert api.reset_runtime(org, ws, runtime_id)["status"] == "idle"

other = ApiClient(base_url, api_key=other_key)
assert other.get_runtime(org, ws, runtime_id)["owned_by_me"] is False
try:
    other.pause_runtime(org, ws, runtime_id)
    raise AssertionError("another member drove the owner's runtime")
except RuntimeError as e:
    assert str(e).startswith("403: "), str(e)

try:
    api.get_runtime(org, ws, "no-such-runtime")
    raise AssertionError("an unknown runtime was found")
except NotFoundError:
    pass

try:
    ApiClient(base_url, api_key="flk_wrong").list_runtimes(org, ws)
    raise AssertionError("a wrong key was accepted")
except AuthenticationError as e:
    assert str(e) == "401: Authentication failed", str(e)

print("ok")

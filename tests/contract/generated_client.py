"""Generates a Python client from the server's /openapi.json with openapi-python-client and
drives it: creates and updates a Fleeti profile and a Chowder instance, checking what the
typed answers say. Run by tests/api/contract.rs as `python generated_client.py BASE KEY`;
prints `ok`."""

import pathlib
import subprocess
import sys
import tempfile
import urllib.request

base, key = sys.argv[1], sys.argv[2]
work = pathlib.Path(tempfile.mkdtemp())
(work / "openapi.json").write_bytes(urllib.request.urlopen(base + "/openapi.json").read())
# No formatter runs afterwards (it is not installed, and the client needs none).
(work / "config.yaml").write_text("post_hooks: []\n")
generator = pathlib.Path(sys.executable).with_name("openapi-python-client")
subprocess.run(
    [str(generator), "generate", "--path", "openapi.json", "--meta", "none", "--output-path", "fleetledger_client",
     "--config", "config.yaml"],
    cwd=work, check=True, capture_output=True,
)
sys.path.insert(0, str(work))

from fleetledger_client import AuthenticatedClient  # noqa: E402
from fleetledger_client.api.instances import create_instance, get_instance, update_instance  # noqa: E402
from fleetledger_client.api.profiles import create_profile, get_profile, patch_profile, replace_profile  # noqa: E402
from fleetledger_client.models import (  # noqa: E402
    CreateInstance, CreateProfile, PatchProfile, ReplaceProfile, UpdateInstance,
)

client = AuthenticatedClient(base_url=base, token=key)

# A profile (Fleeti): create, replace its config, merge a key, read it back.
created = create_profile.sync_detailed(client=client, body=CreateProfile(name="Generated"))
assert created.status_code == 201, created
profile = created.parsed.profile
assert profile.name == "Generated" and profile.latest_revision == 1, profile
replaced = replace_profile.sync_detailed(
    profile.id, client=client, if_match=created.headers["etag"],
    body=ReplaceProfile.from_dict({"config": {"packages": ["vim", "curl"]}, "raw_nix": "{ }"}),
)
assert replaced.status_code == 200, replaced
assert replaced.parsed.created_new_revision is True and replaced.parsed.profile.packages == ["vim", "curl"], replaced.parsed
patched = patch_profile.sync_detailed(profile.id, client=client, body=PatchProfile.from_dict({"packages": ["git"]}))
assert patched.status_code == 200, patched
read = get_profile.sync_detailed(profile.id, client=client)
assert read.status_code == 200 and read.parsed.profile.packages == ["git"], read
assert read.parsed.profile.latest_revision == 3, read.parsed.profile

# An instance (Chowder): create, then change its name and config overrides.
body = CreateInstance.from_dict({"name": "assistant", "model_provider": "anthropic", "openclaw_version": "2026.9.6"})
made = create_instance.sync_detailed(client=client, body=body)
assert made.status_code == 201, made
instance = made.parsed
assert instance.status == "provisioning" and instance.name == "assistant", instance
changes = UpdateInstance.from_dict({"name": "renamed", "openclaw_config": {"agents": {"defaults": {"workspace": "/srv/ws"}}}})
changed = update_instance.sync_detailed(instance.id, client=client, body=changes)
assert changed.status_code == 200, changed
assert changed.parsed.name == "renamed", changed.parsed
assert changed.parsed.openclaw_config.to_dict()["agents"]["defaults"]["workspace"] == "/srv/ws", changed.parsed
read = get_instance.sync_detailed(instance.id, client=client)
assert read.status_code == 200 and read.parsed.name == "renamed", read

# An error comes back typed in the surface's envelope.
missing = get_profile.sync_detailed("00000000-0000-0000-0000-000000000000", client=client)
assert missing.status_code == 404 and missing.parsed.error == "Profile not found", missing

print("ok")

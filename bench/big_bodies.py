#!/usr/bin/env python3
"""Big bodies against every surface: wall time until each request is answered.

Starts the given fleetledger binary on a fresh data dir (SQLite, or a fresh PostgreSQL
database with --pg), creates what the writes need with small requests, then sends each write a body
holding one list (or object) of 100,000 elements -- as many as fit under the 1 MiB body
limit where one element cannot be made that small -- and prints the status and the wall
time until the whole answer has arrived. A request not answered within --timeout
seconds is reported as such; the run goes on with the next one.

"server CPU" is the CPU time (user + system, all threads) the server used while the
request was in flight, which includes its workers and cache follower reading the new
event: on a shared machine it says more than the wall time. Only the Python standard
library is used, so the figures are the server's and the loopback's, not a client
library's.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

LIMIT = 1024 * 1024
N = 100_000


def b36(i):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        i, r = divmod(i, 36)
        out = digits[r] + out
        if i == 0:
            return out


class Server:
    def __init__(self, binary, pg, timeout_seconds, wrap=None):
        self.dir = tempfile.mkdtemp(prefix="fleetledger-bench-")
        env = dict(os.environ)
        env.update(
            {
                "FLEETLEDGER_DATA_DIR": self.dir,
                "FLEETLEDGER_LISTEN": "127.0.0.1:0",
                # The benchmark measures one request at a time, not the per-key limiter.
                "FLEETLEDGER_RATE_LIMIT_PER_SEC": "100000",
                "FLEETLEDGER_RATE_LIMIT_BURST": "100000",
                "RUST_LOG": env.get("RUST_LOG", "warn,fleetledger=info"),
            }
        )
        if timeout_seconds is not None:
            env["FLEETLEDGER_REQUEST_TIMEOUT_SECONDS"] = str(timeout_seconds)
        self.pg = None
        if pg:
            # A database of its own, dropped at the end (psql talks to the admin URL).
            name = f"fleetledger_bench_{uuid.uuid4().hex}"
            subprocess.run(["psql", pg, "-qc", f"CREATE DATABASE {name}"], check=True)
            self.pg = (pg, name)
            env["DATABASE_URL"] = pg.rsplit("/", 1)[0] + "/" + name
        self.log = open(os.path.join(self.dir, "server.log"), "w+")
        command = (wrap.split() if wrap else []) + [binary, "serve"]
        self.proc = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        self.addr = None
        while time.time() < deadline and self.addr is None:
            time.sleep(0.1)
            self.log.seek(0)
            m = re.search(r"listening on http://([0-9.:]+)", self.log.read())
            if m:
                self.addr = m.group(1)
            if self.proc.poll() is not None:
                break
        if self.addr is None:
            self.log.seek(0)
            sys.exit("the server did not start:\n" + self.log.read())
        with open(os.path.join(self.dir, "admin.key")) as f:
            self.key = f.read().strip()
        host, port = self.addr.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.pg:
            admin, name = self.pg
            subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)

    def cpu_seconds(self):
        """CPU time the server process (all its threads) has used so far. With perf or
        another wrapper in front, the wrapper's child is the server."""
        pid = self.proc.pid
        try:
            children = open(f"/proc/{pid}/task/{pid}/children").read().split()
            if children:
                pid = int(children[0])
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def call(self, method, path, body=None, timeout=60):
        """(status, parsed body or text, seconds)."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode())
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        started = time.perf_counter()
        try:
            conn.request(method, path, body=data, headers=headers)
            res = conn.getresponse()
            text = res.read()
            took = time.perf_counter() - started
        except (TimeoutError, OSError) as e:
            return None, str(e), time.perf_counter() - started
        finally:
            conn.close()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text.decode(errors="replace")
        return res.status, parsed, took


def dumps(value):
    return json.dumps(value, separators=(",", ":")).encode()


def profiles(s):
    ok(s.call("POST", "/api/v1/fleets", {"id": "f", "name": "F"}), "fleet")
    r = s.call("POST", "/api/v1/profiles", {"name": "bench"})
    ok(r, "profile")
    p = f"/api/v1/profiles/{r[1]['profile']['id']}"
    packages = [f"p{i}" for i in range(N)]
    patches = {"enabled": True, "url": "https://x.org/l.git", "rev": "r", "patches": [{}] * N}
    return [
        ("PUT config.packages (100k distinct)", "PUT", p, {"config": {"packages": packages}}),
        ("PUT packages (100k distinct)", "PUT", p, {"config": {}, "packages": packages}),
        ("PATCH config.packages (100k distinct)", "PATCH", p, {"config": {"packages": packages}}),
        ("POST fleet_ids (100k distinct, unknown)", "POST", "/api/v1/profiles", {"name": "x", "fleet_ids": [f"f{i}" for i in range(N)]}),
        ("POST fleet_ids (100k equal, existing)", "POST", "/api/v1/profiles", {"name": "x", "fleet_ids": ["f"] * N}),
        ("PUT kernel source_override.patches (100k)", "PUT", p, {"config": {"kernel": {"attr": "linux_6_19", "source_override": patches}}}),
        ("PUT config with 100k keys", "PUT", p, {"config": {b36(i): 0 for i in range(N)}}),
        ("PUT security.firewall.allowed_tcp_ports (100k)", "PUT", p,
         {"config": {"security": {"firewall": {"allowed_tcp_ports": [1 + i % 65535 for i in range(N)]}}}}),
    ]


def runtimes(s):
    w = "/api/v1/org/default/ws/default/runtimes"
    ok(s.call("POST", w, {"key": "bench"}), "runtime")
    cfg = f"{w}/bench/config"
    caps, size = [], 0
    while True:
        item = {"name": b36(len(caps))}
        size += len(dumps(item)) + 1
        if size > LIMIT - 200:
            break
        caps.append(item)
    labels = {b36(i): "" for i in range(N)}
    return [
        ("PUT sandbox.egress.allow (100k distinct)", "PUT", cfg, {"config": {"sandbox": {"egress": {"allow": [f"{b36(i)}.io" for i in range(N)]}}}}),
        ("PUT sandbox.exposed_ports (100k)", "PUT", cfg, {"config": {"sandbox": {"exposed_ports": [1 + i % 65535 for i in range(N)]}}}),
        (f"PUT capabilities ({len(caps) // 1000}k distinct names, as many as fit)", "PUT", cfg, {"config": {"capabilities": caps}}),
        ("PUT capabilities (100k invalid: 100k errors)", "PUT", cfg, {"config": {"capabilities": [0] * N}}),
        ("PUT secrets.secret_ids (100k invalid)", "PUT", cfg, {"config": {"secrets": {"secret_ids": ["x"] * N}}}),
        ("PUT metadata.labels (100k)", "PUT", cfg, {"config": {"metadata": {"labels": labels}}}),
        ("PUT runtime_server.env (100k)", "PUT", cfg, {"config": {"runtime_server": {"env": labels}}}),
    ]


def mission_control(s):
    r = s.call("POST", "/api/v1/gateways", {"name": "g", "url": "local", "workspace_root": "bench"})
    ok(r, "gateway")
    r = s.call("POST", "/api/v1/boards", {"name": "b", "gateway_id": r[1]["id"]})
    ok(r, "board")
    board = r[1]["id"]
    r = s.call("POST", "/api/v1/agents", {"name": "a", "board_id": board})
    ok(r, "agent")
    agent = f"/api/v1/agents/{r[1]['id']}"
    obj = {b36(i): 0 for i in range(N)}
    loops = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}"
    return [
        ("PATCH identity_profile (100k keys)", "PATCH", agent, {"identity_profile": obj}),
        ("PATCH heartbeat_config (100k keys)", "PATCH", agent, {"heartbeat_config": obj}),
        ("PATCH soul_template (1 MB of text)", "PATCH", agent, {"soul_template": "x" * (LIMIT - 100)}),
        ("PATCH soul_template (10^10 loop iterations)", "PATCH", agent, {"soul_template": loops}),
        ("POST agent with identity_profile (100k keys)", "POST", "/api/v1/agents", {"name": "n", "board_id": board, "identity_profile": obj}),
    ]


def instances(s):
    r = s.call("POST", "/v1/instances", {"name": "i", "model_provider": "openai", "openclaw_version": "1"})
    ok(r, "instance")
    instance = r[1]["id"]
    path = f"/v1/instances/{instance}"
    # The worker starts a new instance; overrides then apply live to its sandbox too.
    for _ in range(100):
        if s.call("GET", path)[1].get("status") == "running":
            break
        time.sleep(0.1)
    keys = {b36(i): 0 for i in range(N)}
    # The unset cases first set the keys they remove (a setup request, not measured).
    s.setup = {"unset": ("PATCH", path, {"openclaw_config": {"a": keys}})}
    # A null takes more room than a number: as many unsets as fit under the limit.
    unset = {b36(i): None for i in range(85_000)}
    mixed = {}
    for i in range(45_000):
        mixed[b36(i)] = None
        mixed["z" + b36(i)] = 0
    deep = {b36(i): 0 for i in range(N - 200)}
    for _ in range(120):
        deep = {"d": deep}
    nested = 0
    for _ in range(125):
        nested = [nested]
    return [
        ("PATCH openclaw_config (100k paths set)", "PATCH", path, {"openclaw_config": {"a": keys}}),
        ("PATCH openclaw_config (85k of 100k paths unset, first to last)", "PATCH", path, {"openclaw_config": {"a": unset}}),
        ("PATCH openclaw_config (45k of 100k paths unset between 45k set)", "PATCH", path, {"openclaw_config": {"a": mixed}}),
        ("PATCH openclaw_config (100k leaves 120 levels deep)", "PATCH", path, {"openclaw_config": deep}),
        ("PATCH openclaw_config (arrays nested to the parser's limit)", "PATCH", path, {"openclaw_config": {"n": nested}}),
        ("POST /v1/keys (100k permissions)", "POST", "/v1/keys", {"name": "k", "instance_ids": [instance], "permissions": ["read"] * N}),
        ("POST /v1/keys (20k instance_ids x 20k permissions)", "POST", "/v1/keys",
         {"name": "k", "instance_ids": [instance] * 20_000, "permissions": ["read"] * 20_000}),
    ]


def container_agents(s):
    binaries = [b36(i) for i in range(N)]
    skills = []
    for n in range(2):
        tools = {"shell": {"enabled": True, "allowed_binaries": [f"{n}{b}" for b in binaries]}}
        r = s.call("POST", "/skills", {"name": f"s{n}", "tools_config": tools}, timeout=600)
        ok(r, "skill")
        skills.append(r[1]["id"])
    r = s.call("POST", "/agents", {"agent_id": "bench", "name": "bench"})
    ok(r, "container agent")
    agent = f"/agents/{r[1]['id']}"
    return [
        ("PUT skill_ids (2 skills of 100k allowed_binaries each)", "PUT", agent, {"skill_ids": skills}),
        ("PUT skill_ids (25k ids of one skill of 100k allowed_binaries)", "PUT", agent, {"skill_ids": [skills[0]] * 25_000}),
        ("PUT skill_ids (100k unknown)", "PUT", agent, {"skill_ids": ["x"] * N}),
        ("PUT model_names (100k)", "PUT", agent, {"model_names": ["o3"] * N}),
        ("PUT tools_config (100k allowed_binaries)", "PUT", agent, {"skill_ids": [], "tools_config": {"shell": {"allowed_binaries": binaries}}}),
        ("POST /skills tools (60k, as many as fit)", "POST", "/skills", {"name": "t", "tools": [{"name": b} for b in binaries[:60_000]]}),
    ]


SURFACES = [profiles, runtimes, mission_control, instances, container_agents]


def ok(r, what):
    if r[0] not in (200, 201):
        sys.exit(f"setup {what}: {r[0]} {r[1]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/fleetledger")
    ap.add_argument("--pg", help="PostgreSQL admin URL; each server gets a database of its own (default: SQLite)")
    ap.add_argument("--timeout", type=float, default=120, help="client-side give-up time per request (s)")
    ap.add_argument("--request-timeout", type=int, help="FLEETLEDGER_REQUEST_TIMEOUT_SECONDS for the server")
    ap.add_argument("--only", help="run only cases whose description contains this")
    ap.add_argument("--skip", action="append", default=[], help="skip cases whose description contains this")
    ap.add_argument("--surfaces", help="comma-separated surfaces to run (default: all)")
    ap.add_argument("--wrap", help="a command to run the server under, e.g. 'perf record -g -o perf.data --'")
    args = ap.parse_args()
    chosen = [f for f in SURFACES if not args.surfaces or f.__name__ in args.surfaces.split(",")]
    if not args.surfaces:
        print(f"load average at start: {os.getloadavg()[0]:.1f}")
        print("| surface | request | body | status | wall time | server CPU |")
        print("|---|---|---|---|---|---|")
    for surface in chosen:
        index = 0
        while True:
            # Every case gets a fresh server, so a request left running (or a worker left
            # busy) by one case never slows the next.
            s = Server(args.bin, args.pg, args.request_timeout, args.wrap)
            try:
                s.setup = {}
                listed = surface(s)
                if index >= len(listed):
                    break
                what, method, path, body = listed[index]
                index += 1
                if (args.only and args.only not in what) or any(k in what for k in args.skip):
                    continue
                body = dumps(body)
                assert len(body) <= LIMIT, f"{what}: {len(body)} bytes"
                if "unset" in what:
                    m, p, b = s.setup["unset"]
                    ok(s.call(m, p, b, timeout=600), "the keys to unset")
                time.sleep(0.5)  # let the setup's background work (workers, cache) settle
                cpu = s.cpu_seconds()
                status, answer, took = s.call(method, path, body, timeout=args.timeout)
                cpu = s.cpu_seconds() - cpu
                shown = status if status is not None else f"no answer ({answer})"
                print(f"| {surface.__name__} | {what} | {len(body) / 1024:.0f} KiB | {shown} | {took:.3f} s | {cpu:.2f} s |", flush=True)
                if s.proc.poll() is not None:
                    s.log.seek(0)
                    print("the server exited:\n" + s.log.read()[-2000:], file=sys.stderr)
            finally:
                s.stop()


if __name__ == "__main__":
    main()

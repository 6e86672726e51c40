#!/usr/bin/env python3
"""fleetledger under an external load generator (wrk), beside this machine's ceilings in
the same run: pgbench for the same transaction shape, and a bare axum handler serving the
same pre-serialised body. Prints one markdown table per target for BENCHMARKS.md.

Every server here is the release binary started as the README starts it, on a database
(and JetStream stream) of its own that is dropped at the end.

Usage: bench/external.py --bin target/release/fleetledger --bare target/release/examples/bare
       [--pg URL] [--nats URL] [--seconds N] [--only writes,hot,reads,sqlite,surfaces]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

ARGS = None


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- scratch resources


def psql(url, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True, capture_output=True)



class ScratchDb:
    def __init__(self, prefix):
        self.name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        psql(ARGS.pg, f"CREATE DATABASE {self.name}")
        base = ARGS.pg.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"

    def drop(self):
        psql(ARGS.pg, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def delete_stream(name):
    """Deletes a JetStream stream over the plain NATS protocol (no client library needed)."""
    host, port = ARGS.nats.split("://", 1)[-1].split(":")
    # A stream of millions of messages takes the server a while to delete.
    with socket.create_connection((host, int(port)), timeout=120) as s:
        s.recv(4096)
        inbox = f"_INBOX.{uuid.uuid4().hex}"
        s.sendall(f'CONNECT {{"verbose":false}}\r\nSUB {inbox} 1\r\nPUB $JS.API.STREAM.DELETE.{name} {inbox} 0\r\n\r\nPING\r\n'.encode())
        deadline = time.time() + 120
        data = b""
        while b"MSG" not in data and time.time() < deadline:
            data += s.recv(4096)


# ---------------------------------------------------------------- the server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`fleetledger serve`, on PostgreSQL (+ NATS relay) or embedded SQLite."""

    def __init__(self, backend, relay=True, extra_env=None, db=None):
        self.data = tempfile.mkdtemp(prefix="fleetledger-bench-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db = None
        self.stream = None
        env = dict(os.environ)
        env.update(
            FLEETLEDGER_DATA_DIR=self.data,
            FLEETLEDGER_LISTEN=f"127.0.0.1:{self.port}",
            # High enough never to refuse a benchmark request; the limiter still runs.
            FLEETLEDGER_RATE_LIMIT_PER_SEC="1000000",
            FLEETLEDGER_RATE_LIMIT_BURST="1000000",
        )
        env.pop("DATABASE_URL", None)
        env.pop("NATS_URL", None)
        if backend == "postgres":
            self.db = db or ScratchDb("fleetledger_bench")
            env["DATABASE_URL"] = self.db.url
            if relay:
                self.stream = f"BENCH_{uuid.uuid4().hex[:10].upper()}"
                env["NATS_URL"] = ARGS.nats
                env["FLEETLEDGER_NATS_STREAM"] = self.stream
                env["FLEETLEDGER_NATS_SUBJECT_PREFIX"] = f"bench{uuid.uuid4().hex[:8]}"
        env.update(extra_env or {})
        self.process = subprocess.Popen([ARGS.bin, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.data, "server.log"), "w"))
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=1)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        else:
            raise SystemExit("the server did not start")
        key_file = os.path.join(self.data, "admin.key")
        if os.path.exists(key_file):
            self.key = open(key_file).read().strip()
        else:
            # A store that was not empty at first start (an imported log) has no bootstrap
            # key: make an org and an admin key with the CLI, as an operator would.
            cli = lambda *args: subprocess.run([ARGS.bin, *args], env=env, capture_output=True, text=True, check=True).stdout
            cli("orgs", "create", "bench")
            self.key = cli("keys", "create", "--org", "bench", "--role", "admin", "--name", "bench").strip()

    def call(self, method, path, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        request.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            request.add_header(k, v)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def rss_mb(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if self.db:
            self.db.drop()
        if self.stream:
            try:
                delete_stream(self.stream)
            except OSError as error:
                log(f"  could not delete JetStream stream {self.stream}: {error}")
        shutil.rmtree(self.data, ignore_errors=True)


# ---------------------------------------------------------------- load generators


def wrk(url, connections, lua, seconds=None):
    """Runs wrk; returns (requests/s, non-2xx answers, p50 ms, p99 ms)."""
    seconds = seconds or ARGS.seconds
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
        script = f.name
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", script, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if errors:
        log("  wrk:", errors.group(0))
    return rate, int(bad.group(1)) if bad else 0, latency(out, "50%"), latency(out, "99%")


def latency(out, which):
    m = re.search(rf"^\s+{re.escape(which)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def lua_requests(method, paths, key, body_template=None):
    """A wrk script cycling over `paths`. In `body_template`, the string "__N__" becomes a
    number and "__S__" a string, both changing with every request, so every write changes
    something."""
    quoted = ",".join(json.dumps(p) for p in paths)
    body = "nil"
    if body_template is not None:
        text = json.dumps(body_template)
        parts = re.split(r'("__N__"|"__S__")', text)
        pieces = []
        for part in parts:
            if part == '"__N__"':
                pieces.append("n")
            elif part == '"__S__"':
                pieces.append('\'"s\' .. n .. \'"\'')
            elif part:
                pieces.append(json.dumps(part))
        body = " .. ".join(pieces)
    return f"""
local paths = {{{quoted}}}
local counter = 0
local headers = {{["Authorization"] = "Bearer {key}", ["Content-Type"] = "application/json"}}
function setup(thread) thread:set("offset", math.random(1, #paths)) end
request = function()
  counter = counter + 1
  local n = counter % 50000 + 600
  local path = paths[((counter + offset) % #paths) + 1]
  return wrk.format("{method}", path, headers, {body})
end
"""


def pgbench(url, clients, seconds=None):
    seconds = seconds or ARGS.seconds
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(
            "\\set id random(1, 100000)\nBEGIN;\n"
            "INSERT INTO bench_events (stream_id, data) VALUES (:id, repeat('x', 1000));\n"
            "INSERT INTO bench_models (id, doc) VALUES (:id, repeat('y', 1000)) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc;\n"
            "COMMIT;\n"
        )
        script = f.name
    out = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(2, clients)), "-T", str(seconds), "-f", script, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script)
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


class PgbenchDb:
    def __enter__(self):
        self.db = ScratchDb("fleetledger_pgbench")
        psql(self.db.url, "CREATE TABLE bench_events (position BIGSERIAL PRIMARY KEY, stream_id BIGINT NOT NULL, data TEXT NOT NULL)")
        psql(self.db.url, "CREATE TABLE bench_models (id BIGINT PRIMARY KEY, doc TEXT NOT NULL)")
        return self.db.url

    def __exit__(self, *_):
        self.db.drop()


class Bare:
    """The bare axum handler: a pre-serialised body, nothing else."""

    def __init__(self, body_bytes):
        self.port = free_port()
        self.process = subprocess.Popen([ARGS.bare, "--listen", f"127.0.0.1:{self.port}", "--bytes", str(body_bytes)])
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)
        raise SystemExit("the bare server did not start")

    def stop(self):
        self.process.kill()
        self.process.wait()


# ---------------------------------------------------------------- the targets


def profile_body():
    # ~1 KB of configuration, as in the measurement.
    return {"config": {"banner": "x" * 900, "n": "__N__"}}


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def service_pids():
    """PostgreSQL's processes and the NATS server's: what the service leans on, whose work
    a measurement shares the machine with."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if open(f"/proc/{entry}/comm").read().startswith(("postgres", "nats-server")):
                    pids.append(entry)
            except OSError:
                pass
    return pids


def quiesce(server, limit=120):
    """Waits until the server and what it leans on are idle (under 5% of a core each over a
    second): what one load set in motion (the relay, workers' side effects, PostgreSQL
    writing back, the NATS server expiring its duplicate window) must not run into the
    next measurement. Returns the seconds it waited."""
    started = time.time()
    while time.time() - started < limit:
        pids = service_pids()
        before = (cpu_seconds([server.process.pid]), cpu_seconds(pids))
        time.sleep(1)
        after = (cpu_seconds([server.process.pid]), cpu_seconds(pids))
        if after[0] - before[0] < 0.05 and after[1] - before[1] < 0.05:
            return time.time() - started
    log("  still busy after waiting; measuring anyway")
    return time.time() - started


def relay_caught_up(server, limit=1800):
    """Waits until the relay has published the whole log to JetStream (an imported log is
    published after the server starts; until then its relay shares the machine with the
    measured load). Returns the seconds it took."""
    started = time.time()
    while time.time() - started < limit:
        try:
            metrics = urllib.request.urlopen(server.base + "/metrics", timeout=5).read().decode()
            lag = re.search(r"^fleetledger_relay_lag_events (\d+)", metrics, re.M)
            if lag and int(lag.group(1)) == 0:
                return time.time() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(2)
    log("  the relay did not catch up; measuring anyway")
    return time.time() - started


def create_profiles(server, n):
    ids = []
    for i in range(n):
        status, body = server.call("POST", "/api/v1/profiles", {"name": f"bench-{i}", "config": {"banner": "x" * 900}})
        assert status in (200, 201), (status, body)
        ids.append(body["profile"]["id"])
    return ids


def table(title, header, rows):
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    sys.stdout.flush()


def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"


def target_writes():
    server = Server("postgres", relay=True)
    rows = []
    try:
        ids = create_profiles(server, 1000)
        paths = [f"/api/v1/profiles/{i}" for i in ids]
        with PgbenchDb() as pg_url:
            for clients, goal in [(1, 0.5), (8, 0.6), (32, 0.6)]:
                log(f"writes, {clients} clients")
                quiesce(server)
                rate, bad, p50, p99 = wrk(server.base, clients, lua_requests("PUT", paths, server.key, profile_body()))
                quiesce(server)
                ceiling = pgbench(pg_url, clients)
                rows.append([f"{clients}", f"{rate:,.0f} req/s", f"{bad}", f"{p50:.2f} / {p99:.2f} ms", f"{ceiling:,.0f} tx/s", ratio(rate, ceiling), f"≥ {goal}"])
    finally:
        server.stop()
    table(
        "HTTP writes on PostgreSQL (wrk, PUT /api/v1/profiles/{id} over 1,000 profiles, ~1 KB config, relay on) vs pgbench",
        ["clients", "fleetledger", "non-2xx", "p50 / p99", "pgbench (same shape)", "ratio", "target"],
        rows,
    )


RUNTIMES = "/api/v1/org/default/ws/default/runtimes"

SURFACE_WRITES = {
    # surface: (stream type, create path, create body, write method, write path, write body)
    "profiles (Fleeti)": (
        "profile",
        "/api/v1/profiles",
        lambda i: {"name": f"hot-{i}", "config": {"banner": "x"}},
        "PUT",
        "/api/v1/profiles/{id}",
        {"config": {"banner": "x" * 900, "n": "__N__"}},
    ),
    "runtimes (Dreadnode)": (
        "runtime",
        RUNTIMES,
        lambda i: {"key": f"hot-{i}"},
        "PUT",
        RUNTIMES + "/{id}/config",
        {"config": {"sandbox": {"timeout_seconds": "__N__"}}},
    ),
    "agents (Mission Control)": (
        "mc_agent",
        "/api/v1/agents",
        # Board agents: a gateway has one main agent.
        lambda i: {"name": f"hot-{i}", "board_id": "__BOARD__"},
        "PATCH",
        "/api/v1/agents/{id}",
        {"name": "__S__"},
    ),
    "instances (Chowder)": (
        "instance",
        "/v1/instances",
        lambda i: {"name": f"hot-{i}", "model_provider": "anthropic", "openclaw_version": "2026.9.6"},
        "PATCH",
        "/v1/instances/{id}",
        {"name": "__S__"},
    ),
    "container agents (Hill90)": (
        "container_agent",
        "/agents",
        lambda i: {"agent_id": f"hot-{i}", "name": f"hot-{i}"},
        "PUT",
        "/agents/{id}",
        {"description": "__S__"},
    ),
}


def resource_id(created):
    return created["profile"]["id"] if "profile" in created else created["id"]


def target_hot():
    """10 hot streams: 32 clients writing 10 resources with no If-Match, on every surface."""
    server = Server("postgres", relay=True)
    rows = []
    try:
        with PgbenchDb() as pg_url:
            ceiling = pgbench(pg_url, 32)
        status, gateway = server.call("POST", "/api/v1/gateways", {"name": "edge", "url": "", "workspace_root": "edge"})
        assert status in (200, 201), (status, gateway)
        status, board = server.call("POST", "/api/v1/boards", {"name": "hot", "gateway_id": gateway["id"]})
        assert status in (200, 201), (status, board)
        for surface, (stream_type, create, create_body, method, path, body) in SURFACE_WRITES.items():
            ids = []
            for i in range(10):
                wanted = json.loads(json.dumps(create_body(i)).replace("__BOARD__", board["id"]))
                status, created = server.call("POST", create, wanted)
                assert status in (200, 201), (surface, status, created)
                ids.append(resource_id(created))
            log(f"hot streams, {surface}")
            quiesce(server)
            rate, bad, p50, p99 = wrk(server.base, 32, lua_requests(method, [path.format(id=i) for i in ids], server.key, body))
            contiguous = all(revisions_contiguous(server, stream_type, i) for i in ids)
            rows.append([surface, f"{rate:,.0f} req/s", f"{bad}", "yes" if contiguous else "NO", f"{p99:.1f} ms", f"{ceiling:,.0f} tx/s", ratio(rate, ceiling)])
    finally:
        server.stop()
    table(
        "10 hot streams (wrk, 32 connections writing 10 resources, no If-Match, relay on) vs pgbench at 32 clients; target ≥ 0.5, zero non-2xx",
        ["surface", "fleetledger", "non-2xx", "revisions contiguous", "p99", "pgbench", "ratio"],
        rows,
    )


def revisions_contiguous(server, stream_type, stream_id):
    status, body = server.call("GET", f"/api/v1/ledger/streams/{stream_type}/{stream_id}")
    if status != 200:
        log(f"  cannot read {stream_type}/{stream_id}: {status} {body}")
        return False
    events = body["events"]
    versions = [e["stream_version"] for e in events]
    return versions == list(range(1, len(versions) + 1))


# Rounds of each cached-read point (the median is reported, with the range).
ROUNDS = 3


def target_reads():
    server = Server("postgres", relay=True)
    bare = Bare(2048)
    rows = []
    try:
        ids = create_profiles(server, 32)
        paths = [f"/api/v1/profiles/{i}" for i in ids]
        status, body = server.call("GET", paths[0])
        size = len(json.dumps(body))
        bare.stop()
        bare = Bare(size)
        for clients in (8, 32):
            # The same requests to both, so the load generator spends the same on each.
            requests = lua_requests("GET", paths, server.key)
            # Alternating rounds: on two cores shared with the load generator either side
            # moves by a fifth between back-to-back runs; the median round is reported.
            rounds = []
            for round in range(ROUNDS):
                log(f"cached reads, {clients} clients, round {round + 1} of {ROUNDS}")
                quiesce(server)
                rate, bad, p50, p99 = wrk(server.base, clients, requests)
                ceiling, _, _, _ = wrk(f"http://127.0.0.1:{bare.port}", clients, requests)
                rounds.append((rate / ceiling, rate, bad, p99, ceiling))
            rounds.sort()
            _, rate, bad, p99, ceiling = rounds[len(rounds) // 2]
            spread = f" ({rounds[0][0]:.2f}–{rounds[-1][0]:.2f})" if len(rounds) > 1 else ""
            bad = sum(r[2] for r in rounds)
            rows.append([f"{clients}", f"{rate:,.0f} req/s", f"{bad}", f"{p99:.2f} ms", f"{ceiling:,.0f} req/s", ratio(rate, ceiling) + spread, "≥ 0.7"])
    finally:
        bare.stop()
        server.stop()
    table(
        f"Cached reads (wrk, GET /api/v1/profiles/{{id}} over 32 profiles, {size} B bodies) vs a bare axum handler serving a body of the same size to the same requests; median of {ROUNDS} alternating rounds (range of ratios)",
        ["connections", "fleetledger", "non-2xx", "p99", "bare axum", "ratio", "target"],
        rows,
    )


def target_sqlite():
    rows = []
    for synchronous in ("full", "normal"):
        server = Server("sqlite", extra_env={"FLEETLEDGER_SQLITE_SYNCHRONOUS": synchronous})
        try:
            ids = create_profiles(server, 1000)
            paths = [f"/api/v1/profiles/{i}" for i in ids]
            log(f"sqlite writes, synchronous={synchronous}")
            quiesce(server)
            rate, bad, p50, p99 = wrk(server.base, 32, lua_requests("PUT", paths, server.key, profile_body()))
            quiesce(server)
            rrate, rbad, _, rp99 = wrk(server.base, 32, lua_requests("GET", paths[:32], server.key))
            rows.append([synchronous.upper(), f"{rate:,.0f} req/s", f"{bad}", f"{p50:.2f} / {p99:.2f} ms", f"{rrate:,.0f} req/s", "≥ 5,000 writes/s"])
        finally:
            server.stop()
    table(
        "Embedded SQLite (WAL), wrk with 32 connections: PUT over 1,000 profiles, then cached GETs",
        ["synchronous", "writes", "non-2xx", "write p50 / p99", "cached reads", "target"],
        rows,
    )


# `nats::DEDUP_WINDOW` in the server.
DEDUP_WINDOW_SECONDS = 300


def target_scale():
    """p99 of writes and cached reads, and memory, on a small store and on a large one."""
    rows = []
    for events, streams in [(10_000, 1_000), (ARGS.scale_events, 100_000)]:
        db = ScratchDb("fleetledger_scale")
        log(f"scale: seeding {events:,} events over {streams:,} profiles")
        seeded = subprocess.run([ARGS.scale, "--db", db.url, "--events", str(events), "--streams", str(streams)], capture_output=True, text=True, check=True).stdout
        log("  " + seeded.strip().replace("\n", "\n  "))
        psql(db.url, "VACUUM ANALYZE")
        # Write the seed back now, so that its checkpoint does not share the measured load.
        psql(db.url, "CHECKPOINT")
        # Rebuild as an operator runs it, on the store at rest (the seeding's own rebuild
        # shares the machine with PostgreSQL still writing the import back).
        env = dict(os.environ, DATABASE_URL=db.url)
        rebuilt = subprocess.run([ARGS.bin, "rebuild"], env=env, capture_output=True, text=True, check=True).stderr
        rebuild = re.search(r"\((\d+) events/s\)", rebuilt).group(1)
        log("  " + rebuilt.strip().splitlines()[-1])
        psql(db.url, "CHECKPOINT")
        server = Server("postgres", relay=True, db=db)
        try:
            log(f"  relay published the imported log in {relay_caught_up(server):.0f} s")
            ids = create_profiles(server, 200)
            paths = [f"/api/v1/profiles/{i}" for i in ids]
            rss_idle = server.rss_mb()
            # The NATS server keeps every message id the relay published for one duplicate
            # window (`nats::DEDUP_WINDOW`); on the large store that is millions of ids in
            # its heap, whose upkeep would be measured as the store's. Both stores wait it out.
            log(f"  waiting out the NATS duplicate window ({DEDUP_WINDOW_SECONDS} s)")
            time.sleep(DEDUP_WINDOW_SECONDS)
            log(f"  settled in {quiesce(server, limit=900):.0f} s")
            w_rate, w_bad, w_p50, w_p99 = wrk(server.base, 8, lua_requests("PUT", paths, server.key, profile_body()))
            quiesce(server)
            r_rate, r_bad, r_p50, r_p99 = wrk(server.base, 8, lua_requests("GET", paths, server.key))
            rows.append([f"{events:,} events, {streams + 200:,} resources", f"{w_p99:.2f} ms ({w_rate:,.0f}/s)", f"{r_p99:.2f} ms ({r_rate:,.0f}/s)", f"{rss_idle:.0f} MB / {server.rss_mb():.0f} MB", f"{int(rebuild):,} events/s", f"{w_bad + r_bad}"])
        finally:
            server.stop()
    table(
        "Scale: the same load (wrk, 8 connections; PUT over 200 profiles, then cached GETs) on a small and a large store (PostgreSQL, relay on)",
        ["store", "write p99 (rate)", "cached read p99 (rate)", "RSS at start / after load", "rebuild", "non-2xx"],
        rows,
    )


TARGETS = {"writes": target_writes, "hot": target_hot, "reads": target_reads, "sqlite": target_sqlite, "scale": target_scale}


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default="target/release/fleetledger")
    parser.add_argument("--bare", default="target/release/examples/bare")
    parser.add_argument("--pg", default=os.environ.get("FLEETLEDGER_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--nats", default=os.environ.get("FLEETLEDGER_BENCH_NATS", "nats://127.0.0.1:4222"))
    parser.add_argument("--scale", default="target/release/examples/scale")
    parser.add_argument("--scale-events", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--only", default=",".join(TARGETS))
    ARGS = parser.parse_args()
    print(f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.2f}")
    for name in ARGS.only.split(","):
        TARGETS[name]()


if __name__ == "__main__":
    main()

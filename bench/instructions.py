#!/usr/bin/env python3
"""Instructions per cached read, counted by callgrind: fleetledger's GET
/api/v1/profiles/{id} and the bare axum handler's answer to the same requests. Unlike a
rate, the count does not move with the machine's other load, so it shows what a change to
the read path bought. Every instruction of the process while the load runs is counted
(background tasks included) and divided by the requests answered. Under valgrind, sha256
runs without the CPU's SHA extensions (about 3,500 instructions of a fleetledger read;
~50 ns on hardware that has them).

Usage: bench/instructions.py --bin target/release/fleetledger --bare target/release/examples/bare
       [--pg URL] [--nats URL] [--seconds N]    (needs valgrind and wrk)
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import external  # noqa: E402


def counted(pid, url, requests, seconds, out_dir):
    """Runs wrk (4 connections) against `url` with callgrind counting in `pid`; returns
    the instructions per answered request."""
    subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
    rate, bad, _, _ = external.wrk(url, 4, requests, seconds=seconds)
    subprocess.run(["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    time.sleep(1)
    total = 0
    for path in glob.glob(os.path.join(out_dir, "callgrind.*")):
        for line in open(path):
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    if bad:
        raise SystemExit(f"{bad} requests failed")
    return total / (rate * seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--bare", required=True)
    parser.add_argument("--pg", default=os.environ.get("FLEETLEDGER_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--nats", default=os.environ.get("FLEETLEDGER_BENCH_NATS", "nats://127.0.0.1:4222"))
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    ours_dir, bare_dir = tempfile.mkdtemp(), tempfile.mkdtemp()
    # The server runs under valgrind through a wrapper, started as the other benchmarks start it.
    wrapper = os.path.join(ours_dir, "under-callgrind.sh")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file={ours_dir}/callgrind.%p "{os.path.abspath(args.bin)}" "$@"\n')
    os.chmod(wrapper, 0o755)
    external.ARGS = argparse.Namespace(pg=args.pg, nats=args.nats, bin=wrapper, bare=args.bare, seconds=args.seconds)
    server = external.Server("postgres", relay=True)
    try:
        ids = external.create_profiles(server, 32)
        paths = [f"/api/v1/profiles/{i}" for i in ids]
        _, body = server.call("GET", paths[0])
        requests = external.lua_requests("GET", paths, server.key)
        time.sleep(2)
        ours = counted(server.process.pid, server.base, requests, args.seconds, ours_dir)
    finally:
        server.stop()
    port = external.free_port()
    bare = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={bare_dir}/callgrind.%p",
         args.bare, "--listen", f"127.0.0.1:{port}", "--bytes", str(len(json.dumps(body)))],
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)
        theirs = counted(bare.pid, f"http://127.0.0.1:{port}", requests, args.seconds, bare_dir)
    finally:
        bare.kill()
        bare.wait()
    print(f"| cached read | {ours:,.0f} instructions | bare axum {theirs:,.0f} | {ours / theirs:.2f}× |")


if __name__ == "__main__":
    main()

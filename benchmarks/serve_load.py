"""Load test of `lmtune serve`: N requests (one SST-2 sentence each) from C concurrent clients
on 127.0.0.1, with dynamic batching on and then off. Prints p50/p99 latency, throughput and
failed requests. Bounded: it stops after N requests per setting.

    .venv/bin/python benchmarks/serve_load.py [--run runs/bench-sst2] [--requests 2000] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from preset_run import ROOT, SHARED_DATA


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def load(url: str, texts: list[str], requests: int, clients: int) -> dict:
    import httpx

    latencies, failures, queue = [], 0, asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(texts[i % len(texts)])

    async def client(session: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            text = queue.get_nowait()
            start = time.perf_counter()
            try:
                response = await session.post(url, json={"inputs": [text]})
                failures += response.status_code != 200
            except httpx.HTTPError:
                failures += 1
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "requests_per_s": requests / seconds, "failed": failures}


def run_server(run: str, port: int, batching: bool) -> subprocess.Popen:
    command = [sys.executable, "-m", "lmtune.cli", "serve", run, "--port", str(port)]
    if not batching:
        command.append("--no-batching")
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    sys.exit("the server did not become ready in 120 s")


def main() -> None:
    from lmtune.data import read_table

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default=str(ROOT / "runs" / "bench-sst2"))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    texts = [r.fields["sentence"] for r in read_table(SHARED_DATA / "sst2" / "dev.tsv").records]
    rows = {}
    for batching in (True, False):
        port = free_port()
        server = run_server(args.run, port, batching)
        try:
            url = f"http://127.0.0.1:{port}/v1/models/{Path(args.run).name}/predict"
            rows["on" if batching else "off"] = asyncio.run(load(url, texts, args.requests, args.clients))
        finally:
            server.terminate()
            server.wait(timeout=60)
        print(f"batching {'on' if batching else 'off'}: {rows['on' if batching else 'off']}", flush=True)
    print(f"\n{args.requests} requests (one SST-2 sentence each), {args.clients} concurrent clients, 127.0.0.1:")
    print("| dynamic batching | p50 ms | p99 ms | requests/s | failed |\n|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['requests_per_s']:.1f} | {row['failed']} |")


if __name__ == "__main__":
    main()

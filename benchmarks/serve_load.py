"""Load test of ``nlp-transfer serve`` against a FastAPI server around ``transformers.pipeline``.

    python benchmarks/serve_load.py --model_dir outputs/sentiment          # ~20 min on 2 cores
    python benchmarks/serve_load.py --model_dir M --concurrency 1,8 --duration_s 5 \\
        --backends torch --skip_checks --output_dir /tmp/serve_load          # a smoke run

The model: ``--model_dir``, a run of ``recipes/sentiment.py`` (copied to a work folder first, so
the ONNX files made here stay out of it). Texts: the built-in sentiment test split (1,008
sentences), sent in order, ``--texts_per_request`` per request. Each server is its own process
on 127.0.0.1; the client is one asyncio process (httpx) running ``c`` concurrent clients, each
sending its next request as soon as the last is answered (a closed loop, so the load is bounded
by ``c``), for ``--duration_s`` after a 3 s warm-up at the same concurrency. Arms:

- ``ours-<backend>-batching``: ``nlp-transfer serve --dynamic_batching`` (``--max_batch_size
  32 --max_wait_ms 0``, its defaults), ``<backend>`` torch, onnxruntime or int8 (int8's default
  is no batching: ``serving.settings.default_dynamic_batching``);
- ``ours-<backend>-no_batching``: the same with ``--no_dynamic_batching``;
- ``pipeline``: ``benchmarks/pipeline_server.py`` (``--peer_batch_size``).

Per arm and concurrency: requests and texts per second, p50/p95/p99 latency (ms), errors. Then
two checks on ``ours-torch-batching``: 64 clients for 60 s (every request answered, none
errored), and SIGTERM half-way through a 10 s load at 32 clients (each request either answered
200, or refused before the server read it: connection refused or closed unanswered because
the listening socket had closed; an accepted request that got an error or no answer is lost).
Goals (issue 38): at 32 clients at least 3x the pipeline server's throughput with p99 latency
no worse; no request lost or errored in either check.

Writes ``<output_dir>/serve_load.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
BACKENDS = {
    "torch": [],
    "onnxruntime": ["--backend", "onnxruntime"],
    "int8": ["--backend", "onnxruntime", "--quantize", "int8"],
}


def load_parser(doc: str, concurrency: str, duration_s: float) -> argparse.ArgumentParser:
    """The flags a load test shares (model, texts, clients, duration, output); this script and
    ``serve_settings.py`` add their own."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", required=True, help="A run of recipes/sentiment.py.")
    parser.add_argument("--dataset_name", default="rotten_tomatoes_sentences")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--concurrency", default=concurrency)
    parser.add_argument("--duration_s", type=float, default=duration_s)
    parser.add_argument("--output_dir", default=str(harness.RESULTS))
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = load_parser(__doc__, "1,8,32,64", 30.0)
    parser.add_argument("--texts_per_request", type=int, default=1)
    parser.add_argument("--backends", default="torch,onnxruntime,int8")
    parser.add_argument("--peer_batch_size", type=int, default=8)
    parser.add_argument("--skip_checks", action="store_true", help="No 60 s and SIGTERM checks.")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(command: list[str], url: str, log: Path) -> subprocess.Popen:
    """Start a server process and wait until ``/health`` answers."""
    import httpx

    out = log.open("w", encoding="utf-8")
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited: see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{command[:4]} did not start in 300 s: see {log}")
        time.sleep(0.5)


def stop_server(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


async def load(
    url: str, texts: list[str], per_request: int, clients: int, duration_s: float,
    on_half_time=None,
) -> dict:  # fmt: skip
    """``clients`` closed-loop clients for ``duration_s``: latencies and outcome counts."""
    import httpx

    latencies, outcomes = [], {"ok": 0, "error_status": 0, "refused": 0, "lost": 0}
    position = 0
    start = time.perf_counter()
    end = start + duration_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal position
        while time.perf_counter() < end:
            batch = [texts[(position + i) % len(texts)] for i in range(per_request)]
            position += per_request
            sent = time.perf_counter()
            try:
                response = await http.post(f"{url}/predict", json={"texts": batch})
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                # refused at connect, or the connection closed before any response byte: the
                # server never took the request (it had closed its listening socket)
                outcomes["refused" if on_half_time else "lost"] += 1
                if not on_half_time:
                    print(f"request failed: {exc!r}", flush=True)
                await asyncio.sleep(0.05)
                continue
            except httpx.HTTPError as exc:
                outcomes["lost"] += 1
                print(f"request lost: {exc!r}", flush=True)
                continue
            if response.status_code == 200 and len(response.json()["predictions"]) == per_request:
                outcomes["ok"] += 1
                latencies.append(time.perf_counter() - sent)
            else:
                outcomes["error_status"] += 1

    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        tasks = [asyncio.create_task(client(http)) for _ in range(clients)]
        if on_half_time is not None:
            await asyncio.sleep(duration_s / 2)
            on_half_time()
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    ms = sorted(1000 * v for v in latencies)

    def pct(q):
        return ms[min(len(ms) - 1, int(q * len(ms)))] if ms else None

    return {
        "clients": clients,
        "seconds": elapsed,
        "requests_per_s": outcomes["ok"] / elapsed,
        "texts_per_s": outcomes["ok"] * per_request / elapsed,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(ms) if ms else None,
        **outcomes,
    }


def arms(args, model: Path) -> dict[str, list[str]]:
    serve = [sys.executable, "-m", "nlp_transfer", "serve", "--model_dir", str(model)]
    out = {}
    for backend in args.backend_list:
        out[f"ours-{backend}-batching"] = [*serve, *BACKENDS[backend], "--dynamic_batching"]
        out[f"ours-{backend}-no_batching"] = [*serve, *BACKENDS[backend], "--no_dynamic_batching"]
    peer = [sys.executable, str(HERE / "pipeline_server.py"), "--model_dir", str(model)]
    out["pipeline"] = [*peer, "--batch_size", str(args.peer_batch_size)]
    return out


def run_arm(name: str, command: list[str], args, texts, log_dir: Path) -> list[dict]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    harness.check_load(settle_s=15)
    process = start_server([*command, "--port", str(port)], url, log_dir / f"{name}.log")
    rows = []
    try:
        for clients in args.concurrency_list:
            asyncio.run(load(url, texts, args.texts_per_request, clients, 3.0))  # warm-up
            row = asyncio.run(load(url, texts, args.texts_per_request, clients, args.duration_s))
            rows.append({"arm": name, **row})
            print(
                f"{name} c={clients}: {row['requests_per_s']:.1f} req/s, p50 {row['p50_ms']} "
                f"ms, p99 {row['p99_ms']} ms, errors {row['error_status']}, lost {row['lost']}",
                flush=True,
            )
    finally:
        stop_server(process)
    return rows


STOPPED_RE = re.compile(r"stopped after answering (\d+) of (\d+) accepted")


def sigterm_check(command: list[str], args, texts, log_dir: Path) -> dict:
    """SIGTERM half-way through a 10 s load at 32 clients. The server logs how many /predict
    requests it read and answered; ``lost`` counts accepted requests left unanswered, and
    answers the client did not receive."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = log_dir / "sigterm.log"
    process = start_server([*command, "--port", str(port)], url, log)

    def terminate():
        process.send_signal(signal.SIGTERM)

    row = asyncio.run(load(url, texts, args.texts_per_request, 32, 10.0, on_half_time=terminate))
    exit_code = process.wait(60)
    found = STOPPED_RE.findall(log.read_text(encoding="utf-8"))
    answered, accepted = (int(v) for v in found[-1]) if found else (None, None)
    row |= {"exit_code": exit_code, "server_answered": answered, "server_accepted": accepted}
    if accepted is None:
        row["lost"] = None  # the server's count is missing: the check cannot be made
    else:  # the server's warm-up-free count: only this load's requests reached it
        row["lost"] = (accepted - answered) + max(0, answered - row["ok"])
    return row


def markdown(rows: list[dict], checks: dict, cpu: str, args) -> str:
    table = harness.markdown_table(
        ["arm", "clients", "requests/s", "p50 ms", "p95 ms", "p99 ms", "errors or lost"],
        [
            [r["arm"], r["clients"], f"{r['requests_per_s']:.1f}", *(
                "—" if r[k] is None else f"{r[k]:.0f}" for k in ("p50_ms", "p95_ms", "p99_ms")
             ), r["error_status"] + r["lost"]]
            for r in rows
        ],
    )  # fmt: skip
    lines = [
        f"On {cpu}. {args.texts_per_request} text(s) per request, closed-loop clients, "
        f"{args.duration_s:.0f} s per row after a 3 s warm-up; the peer batches each request's "
        f"texts at {args.peer_batch_size}.",
        "",
        table,
    ]
    for name, check in checks.items():
        lines.append(
            f"- {name}: {check['ok']} answered 200, {check['error_status']} error responses, "
            f"{check['lost']} lost, {check['refused']} refused before being read"
            + (
                f"; the server answered {check['server_answered']} of the "
                f"{check['server_accepted']} requests it accepted, exit code {check['exit_code']}"
                if "exit_code" in check
                else ""
            )
        )
    for name, value in goals(rows, checks).items():
        lines.append(f"- goal {name}: {value}")
    return "\n".join(lines) + "\n"


def goals(rows: list[dict], checks: dict) -> dict:
    at32 = {r["arm"]: r for r in rows if r["clients"] == 32}
    out = {}
    if "pipeline" in at32:
        peer = at32["pipeline"]
        for name, r in at32.items():
            if name.endswith("-batching") and not name.endswith("no_batching"):
                speed = r["requests_per_s"] / peer["requests_per_s"]
                met = speed >= 3 and r["p99_ms"] <= peer["p99_ms"]
                out[f"{name} at 32 clients"] = (
                    f"{speed:.2f}x the pipeline server's throughput, p99 {r['p99_ms']:.0f} vs "
                    f"{peer['p99_ms']:.0f} ms: {'met' if met else 'not met'}"
                )
    for name, check in checks.items():
        ok = check["lost"] == 0 and check["error_status"] == 0
        out[name] = "met" if ok else "not met"
    return out


def at_32_clients(rows: list[dict]) -> list[dict]:
    """Each arm at 32 clients: requests/s, p99 (ms) and the ratio to the pipeline server's
    throughput (the figures the docs quote)."""
    at32 = [r for r in rows if r["clients"] == 32]
    peer = next((r for r in at32 if r["arm"] == "pipeline"), None)
    return [
        {
            "arm": r["arm"],
            "requests_per_s": r["requests_per_s"],
            "p99_ms": r["p99_ms"],
            "vs_pipeline": r["requests_per_s"] / peer["requests_per_s"] if peer else None,
        }
        for r in at32
    ]


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.concurrency_list = [int(c) for c in args.concurrency.split(",") if c]
    args.backend_list = [b for b in args.backends.split(",") if b]
    unknown = set(args.backend_list) - set(BACKENDS)
    if unknown:
        raise SystemExit(f"--backends: unknown {sorted(unknown)}; use {', '.join(BACKENDS)}")
    info, machine = harness.run_info(script="serve_load.py"), harness.machine()
    work = Path(tempfile.mkdtemp(prefix="serve_load-"))
    log_dir = work / "logs"
    log_dir.mkdir()
    model = work / "model"
    skip = shutil.ignore_patterns("checkpoints", "plots", "*.onnx", "adapter")
    shutil.copytree(args.model_dir, model, ignore=skip)
    from nlp_transfer import load_text_classification_dataset

    texts = list(
        load_text_classification_dataset(args.dataset_name, seed=args.seed)["test"]["text"]
    )
    for backend in args.backend_list:  # the ONNX files, made once before any timing
        if backend != "torch":
            from nlp_transfer import TextClassifier

            extra = {"quantize": "int8"} if backend == "int8" else {}
            TextClassifier.from_pretrained(model, backend="onnxruntime", **extra)
    rows = []
    commands = arms(args, model)
    for name, command in commands.items():
        rows += run_arm(name, command, args, texts, log_dir)
    checks = {}
    if not args.skip_checks:
        default = commands["ours-torch-batching"] if "torch" in args.backend_list else None
        if default is not None:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            process = start_server([*default, "--port", str(port)], url, log_dir / "long.log")
            try:
                checks["64 clients for 60 s"] = asyncio.run(load(url, texts, 1, 64, 60.0))
            finally:
                stop_server(process)
            checks["SIGTERM during load at 32 clients"] = sigterm_check(
                default, args, texts, log_dir
            )
    settings = {k: v for k, v in vars(args).items() if k != "output_dir"}
    document = harness.result_document(
        info, machine, settings, rows=rows, checks=checks, goals=goals(rows, checks),
        at_32_clients=at_32_clients(rows),
    )  # fmt: skip
    md = markdown(rows, checks, machine["cpu"], args)
    paths = harness.write_result("serve_load", document, md, Path(args.output_dir))
    print(md)
    print(f"wrote {paths[0]} and {paths[1]}")
    return document


if __name__ == "__main__":
    main()

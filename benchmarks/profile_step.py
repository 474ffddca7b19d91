"""Where a full fine-tuning step's time goes on this machine: torch.profiler, fp32 and bf16.

    python benchmarks/profile_step.py               # 12 profiled steps per precision, batch 32
    python benchmarks/profile_step.py --steps 4 --output_dir /tmp/prof

The step is ``bf16_cpu.py``'s (the packaged all-MiniLM-L6-v2 on length-grouped batches of the
built-in sentiment sentences: forward, cross-entropy, backward, fused AdamW), the work that
both nlp_transfer and the Hugging Face Trainer run for every batch of full fine-tuning. The
same batches are profiled in float32 and under bf16 autocast. Reported per precision: the
share of the step in forward, backward and optimizer (``record_function`` ranges), and the
operators' self CPU time grouped into matrix products, attention, normalisation, activations,
optimizer, element-wise and other, with the top operators. This is the profile
``throughput_vs_hf.py``'s full fine-tuning goal asks for where it is not met: it shows how much
of a step is kernels that any PyTorch trainer calls the same way.

Writes ``<output_dir>/profile_step.{json,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import harness

# operator (aten::<op>) -> group, first match wins: <op> (leading "_" dropped) equals a needle,
# starts with it and "_" (in-place and backward variants), or contains a needle of 6+ letters
GROUPS = (
    ("matrix products", ("addmm", "mm", "bmm", "matmul", "linear", "baddbmm")),
    ("attention", ("scaled_dot_product", "softmax", "safe_softmax", "flash_attention")),
    ("layer norm", ("layer_norm",)),
    ("activations (GELU, tanh)", ("gelu", "tanh")),
    ("optimizer (fused AdamW)", ("fused_adam",)),
    ("embeddings", ("embedding",)),
    ("dropout", ("dropout", "bernoulli")),
    ("casts and copies", ("copy", "to", "to_copy", "clone", "contiguous")),
    ("element-wise", ("add", "mul", "div", "sub", "sum", "mean", "where", "masked_fill", "fill")),
)
PHASES = ("forward", "backward", "optimizer")


def group_of(name: str) -> str:
    """The group of an operator name such as ``aten::addmm`` (``other`` when none matches)."""
    op = name.split("::")[-1].lstrip("_")
    for group, needles in GROUPS:
        for n in needles:
            if op == n or op.startswith(n + "_") or (len(n) >= 6 and n in op):
                return group
    return "other"


def summarise(events: list[dict], step_s: float) -> dict:
    """Phase shares and operator groups from ``[{"name", "self_cpu_s", "cpu_s", "count"}]``.

    Args:
        events: The profiler's key averages (operators and ``record_function`` ranges).
        step_s: Wall seconds of all profiled steps together.

    Returns:
        ``{"phases": {phase: seconds}, "groups": {group: self seconds}, "top": [...]}``.
    """
    phases = {p: next((e["cpu_s"] for e in events if e["name"] == p), 0.0) for p in PHASES}
    ops = [e for e in events if e["name"] not in PHASES and "::" in e["name"]]
    groups: dict[str, float] = {}
    for e in ops:
        groups[group_of(e["name"])] = groups.get(group_of(e["name"]), 0.0) + e["self_cpu_s"]
    top = sorted(ops, key=lambda e: -e["self_cpu_s"])[:12]
    return {
        "step_s": step_s,
        "phases": phases,
        "groups": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
        "top": top,
    }


def profile(step, steps: int, bf16: bool) -> dict:
    """Profile ``steps`` steps (after one warm-up) in one precision."""
    import time

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step(0, bf16)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        tokens = sum(step(i, bf16)[1] for i in range(1, steps + 1))
        wall = time.perf_counter() - start
    events = [
        {
            "name": e.key,
            "self_cpu_s": e.self_cpu_time_total / 1e6,
            "cpu_s": e.cpu_time_total / 1e6,
            "count": e.count,
        }
        for e in prof.key_averages()
    ]
    return summarise(events, wall) | {"padded_tokens": tokens}


def markdown(results: dict[str, dict], info: dict) -> str:
    """Two tables (phases; operator groups) and the top operators per precision."""
    precisions = list(results)
    text = (
        f"Profiled steps: {info['steps']} per precision (batch {info['batch_size']}), "
        "the same batches. Seconds are profiler CPU time summed over the steps; shares are of "
        "the profiled wall time. Profiling adds overhead, so compare shares, not totals with "
        "other benchmarks.\n\n"
    )
    rows = [
        [
            p,
            *(
                f"{r['phases'][p]:.2f} s ({r['phases'][p] / r['step_s']:.0%})"
                for r in results.values()
            ),
        ]
        for p in PHASES
    ]
    rows.append(["whole steps (wall)", *(f"{r['step_s']:.2f} s" for r in results.values())])
    text += harness.markdown_table(["phase", *precisions], rows) + "\n"
    groups = list(dict.fromkeys(g for r in results.values() for g in r["groups"]))
    total = {k: sum(r["groups"].values()) for k, r in results.items()}
    rows = [
        [
            g,
            *(
                f"{r['groups'].get(g, 0.0):.2f} s ({r['groups'].get(g, 0.0) / total[k]:.0%})"
                for k, r in results.items()
            ),
        ]
        for g in groups
    ]
    text += "Operators' self CPU time by group (share of all operators' self time):\n\n"
    text += harness.markdown_table(["group", *precisions], rows) + "\n"
    for k, r in results.items():
        text += f"Top operators, {k}:\n\n"
        text += harness.markdown_table(
            ["operator", "self CPU s", "calls"],
            [[f"`{e['name']}`", f"{e['self_cpu_s']:.2f}", e["count"]] for e in r["top"]],
        )
        text += "\n"
    return text


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=12, help="Profiled steps per precision.")
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--output_dir", default=str(harness.RESULTS))
    args = parser.parse_args(argv)
    before = harness.check_load()

    from bf16_cpu import make_step
    from torch.profiler import record_function

    step = make_step(args.per_device_train_batch_size, phases=record_function)
    results = {name: profile(step, args.steps, name == "bf16") for name in ("fp32", "bf16")}
    settings = {"steps": args.steps, "batch_size": args.per_device_train_batch_size}
    document = harness.result_document(
        harness.run_info(script="profile_step.py"),
        harness.machine(),
        settings | {"load_before": before},
        results=results,
    )
    harness.write_result(
        "profile_step", document, markdown(results, settings), Path(args.output_dir)
    )
    for name, r in results.items():
        shares = ", ".join(
            f"{g} {s / sum(r['groups'].values()):.0%}" for g, s in list(r["groups"].items())[:3]
        )
        print(f"{name}: {r['step_s'] / args.steps:.2f} s/step; {shares}")
    return document


if __name__ == "__main__":
    main()

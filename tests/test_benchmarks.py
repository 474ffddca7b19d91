"""The benchmark harness's pure parts: summaries, paired ratios, load marking, result shape."""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def bench_module(name: str):
    """A benchmark script as a module, under its own name: ``benchmarks/domain_adaptation.py``
    must not take the place of ``recipes/domain_adaptation.py`` for the other tests."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import their siblings (harness...)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


harness = bench_module("harness")


def test_summarize_gives_median_and_range_and_drops_missing():
    summary = harness.summarize([3.0, None, 1.0, 10.0])
    assert summary == {"median": 3.0, "min": 1.0, "max": 10.0, "n": 3, "values": [3.0, 1.0, 10.0]}
    assert harness.summarize([2.0, 4.0])["median"] == 3.0
    assert harness.summarize([None])["median"] is None


def test_paired_ratios_are_taken_per_repeat_not_of_medians():
    # Medians 20/10 = 2.0, but per repeat 10/10, 20/5, 40/40 -> median 1.0.
    ratios = harness.paired_ratios([10.0, 20.0, 40.0], [10.0, 5.0, 40.0])
    assert ratios["values"] == [1.0, 4.0, 1.0]
    assert ratios["median"] == 1.0
    with pytest.raises(ValueError, match="cannot pair"):
        harness.paired_ratios([1.0, 2.0], [1.0])


@pytest.mark.parametrize(
    ("load", "cores", "loaded"),
    [(0.9, 2, False), (1.0, 2, False), (1.01, 2, True), (3.0, 8, False)],
)
def test_is_loaded_above_half_a_process_per_core(load, cores, loaded):
    assert harness.is_loaded(load, cores) is loaded


def test_run_arm_refuses_or_marks_a_loaded_machine(monkeypatch, tmp_path):
    monkeypatch.setattr(harness.os, "getloadavg", lambda: (50.0, 50.0, 50.0))
    monkeypatch.setattr(harness, "busy_cores", lambda: 50.0)
    arm = harness.Arm("noop", [sys.executable, "-c", "pass"])
    with pytest.raises(harness.MachineLoadedError, match="--refuse_when_loaded"):
        harness.run_arm(arm, tmp_path, settle_s=0, refuse_when_loaded=True)
    record = harness.run_arm(arm, tmp_path, settle_s=0)
    assert record["loaded"] is True and record["load_1m_before"] == 50.0


@pytest.mark.parametrize(
    ("load", "busy", "loaded"),
    [(50.0, 50.0, True), (50.0, 0.1, False), (0.1, 50.0, False), (50.0, None, True)],
)
def test_check_load_needs_both_the_load_average_and_the_busy_sample(
    monkeypatch, load, busy, loaded
):
    # A high load average with an idle last second is our previous arm decaying, not a peer.
    monkeypatch.setattr(harness.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(harness, "busy_cores", lambda: busy)
    assert harness.check_load(0.5) == {"load_1m": load, "busy_cores": busy, "loaded": loaded}


def test_busy_cores_is_within_the_machine():
    busy = harness.busy_cores(0.2)
    assert busy is None or 0.0 <= busy <= (harness.os.cpu_count() or 1) + 1e-6


def test_run_arm_times_a_process_and_reads_its_metrics(tmp_path):
    out = tmp_path / "m.json"
    code = f"import json; sum(range(10**6)); json.dump({{'test': {{'accuracy': 0.5}}}}, open({str(out)!r}, 'w'))"
    arm = harness.Arm(
        "child",
        [sys.executable, "-c", code],
        metrics_path=out,
        phases=lambda metrics, log: {"training": metrics["test"]["accuracy"]},
        extra={"setting": "x"},
    )
    record = harness.run_arm(arm, tmp_path, settle_s=0, max_load_per_core=1e9)
    assert record["metrics"] == {"test": {"accuracy": 0.5}}
    assert record["phases"] == {"training": 0.5} and record["setting"] == "x"
    assert record["wall_s"] > 0 and record["cpu_s"] > 0 and record["loaded"] is False
    failing = harness.Arm("bad", [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="exited 3"):
        harness.run_arm(failing, tmp_path, settle_s=0, max_load_per_core=1e9)


def test_result_document_shape_and_loaded_flag(tmp_path):
    records = [{"arm": "a", "loaded": False}, {"arm": "b", "loaded": True}]
    info = {"date": "d", "git_sha": "abc", "command": "python benchmarks/x.py"}
    machine = {
        "cpu": "CPU",
        "cores": 2,
        "torch_threads": 2,
        "gpu": None,
        "versions": {"torch": "t", "transformers": "tr"},
    }
    doc = harness.result_document(info, machine, {"seed": 1}, records=records, rows=[1])
    assert list(doc) == ["run_info", "machine", "settings", "records", "rows"]
    assert doc["run_info"]["any_loaded"] is True and "any_loaded" not in info
    json_path, md_path = harness.write_result("x", doc, "| a |\n", tmp_path)
    assert json.loads(json_path.read_text())["settings"] == {"seed": 1}
    assert "python benchmarks/x.py @ abc" in md_path.read_text()
    assert "loaded machine" in md_path.read_text()


def test_markdown_table_and_range_format():
    text = harness.markdown_table(["a", "b"], [[1, "x|y"]])
    assert text.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | x\\|y |"]
    with pytest.raises(ValueError, match="2 cells"):
        harness.markdown_table(["a"], [[1, 2]])
    assert harness.fmt_range(harness.summarize([1.0, 2.0, 4.0]), 1, "x") == "2.0x (1.0-4.0)"
    assert harness.fmt_range(harness.summarize([1.0]), 2) == "1.00"
    assert harness.fmt_range(harness.summarize([]), 2) == "—"


def test_phases_from_ours_splits_cache_encoding_training_and_validation():
    metrics = {
        "timings": {"train_runtime_s": 30.0, "total_runtime_s": 60.0},
        "validation": [{"epoch_runtime_s": 14.0}, {"epoch_runtime_s": 16.0}],
    }
    log = (
        "Frozen-prefix cache: embeddings + layer_0..layer_3 computed once for 8 + 1 examples "
        "(3 MiB float16, in memory) in 7.5 s; training runs only the layers above\n"
    )
    phases = harness.phases_from_ours(metrics, log)
    assert phases == {
        "cache_build": 7.5,
        "training": 30.0,
        "validation": 0.0,
        "run_total": 60.0,
        "other": 22.5,
    }  # epochs' 30 s are all training: no validation time left
    metrics["validation"][1]["epoch_runtime_s"] = 20.0
    fe_log = "Features (mean pooling, 384 dims) computed once: train 12s, validation 2s, test 2s\n"
    metrics["timings"]["train_runtime_s"] = 13.0  # the train split's 12 s encoding + 1 s head
    phases = harness.phases_from_ours(metrics, fe_log)
    assert phases["feature_encoding"] == 16.0 and phases["training"] == 1.0
    assert phases["validation"] == pytest.approx(33.0)
    assert phases["other"] == pytest.approx(60.0 - 16.0 - 1.0 - 33.0)
    # Whole-second encoding above the exact total: clamped; a scikit-learn head's own line wins.
    metrics["timings"]["train_runtime_s"] = 11.8
    assert harness.phases_from_ours(metrics, fe_log)["training"] == 0.0
    fitted = fe_log + "Fitted LogisticRegression() on 64 feature vectors in 0.3s\n"
    assert harness.phases_from_ours(metrics, fitted)["training"] == 0.3


def test_coral_weight_is_chosen_by_mean_accuracy_on_the_sweep_smaller_on_ties():
    domain_adaptation = bench_module("domain_adaptation")

    runs = [
        {"settings": {"coral_weight": w}, "methods": {"coral": {"accuracy": a}}}
        for w, a in (("100", 0.70), ("1000", 0.80), ("1000", 0.78), ("1e4", 0.79), ("1e5", 0.79))
    ]
    weight, means = domain_adaptation.choose_coral_weight(runs)
    assert weight == 1000.0 and means[1000.0] == pytest.approx(0.79)
    tie = [
        {"settings": {"coral_weight": w}, "methods": {"coral": {"accuracy": 0.5}}}
        for w in ("1e4", "10")
    ]
    assert domain_adaptation.choose_coral_weight(tie)[0] == 10.0
    with pytest.raises(ValueError, match="--coral_weights"):
        domain_adaptation.choose_coral_weight([{"settings": {}, "methods": {"dann": {}}}])


def test_frozen_vs_full_figure_redraws_a_result_with_labels_apart(tmp_path):
    frozen_vs_full = bench_module("frozen_vs_full")

    # The committed run: 13 strategies, six of them within 45-55 s and 0.73-0.81 accuracy.
    result = tmp_path / "frozen_vs_full.json"
    result.write_bytes((BENCHMARKS / "results" / "frozen_vs_full.json").read_bytes())
    path, boxes = frozen_vs_full.replot(result)
    assert path == tmp_path / "frozen_vs_full.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(result.read_text())["summary"]
    assert len(boxes) == len([s for s in summary if s["strategy"] != "tfidf_logreg"])
    overlaps = [
        (i, j)
        for i, a in enumerate(boxes)
        for j, b in enumerate(boxes[:i])
        if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
    ]
    assert not overlaps
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"settings": {}, "summary": []}))
    with pytest.raises(SystemExit, match="not a frozen_vs_full result"):
        frozen_vs_full.replot(bad)


def test_few_shot_sampling_is_k_per_class_seeded_and_checked():
    few_shot_setfit = bench_module("few_shot_setfit")

    labels = [0] * 50 + [1] * 10
    picked = few_shot_setfit.sample_per_class(labels, 8, seed=3)
    assert sorted(labels[i] for i in picked) == [0] * 8 + [1] * 8
    assert len(set(picked)) == 16
    assert picked == few_shot_setfit.sample_per_class(labels, 8, seed=3)
    assert picked != few_shot_setfit.sample_per_class(labels, 8, seed=4)
    with pytest.raises(ValueError, match="fewer than --shots 16"):
        few_shot_setfit.sample_per_class(labels, 16, seed=0)


def test_few_shot_reuses_earlier_records_only_for_cells_and_methods_not_run_now(tmp_path):
    import argparse

    few_shot_setfit = bench_module("few_shot_setfit")

    def record(method, k, seed, score):
        return {"dataset": "sms_spam", "method": method, "k": k, "seed": seed, "score": score,
                "wall_s": 1.0}  # fmt: skip

    earlier = tmp_path / "earlier.json"
    earlier.write_text(
        json.dumps(
            {
                "run_info": {"git_sha": "abcdef123"},
                "records": [record("setfit", 8, 0, 0.6), record("setfit", 8, 9, 0.1),
                            record("tfidf_logreg", 8, 0, 0.5), record("setfit", 64, 0, 0.7)],
            }
        )
    )  # fmt: skip
    now = [record("ours_default", 8, 0, 0.65), record("tfidf_logreg", 8, 0, 0.52)]
    args = argparse.Namespace(reuse=str(earlier))
    reused = few_shot_setfit.reused_records(args, now)
    assert [(r["method"], r["k"], r["seed"]) for r in reused] == [("setfit", 8, 0)]
    assert reused[0]["reused_from"] == f"{earlier} @ abcdef1"
    summary = few_shot_setfit.summarise(now + reused)
    setfit = next(s for s in summary if s["method"] == "setfit")
    assert setfit["reused_from"] == [f"{earlier} @ abcdef1"]
    assert "†" in few_shot_setfit.markdown(summary, [8])
    assert few_shot_setfit.reused_records(argparse.Namespace(reuse=None), now) == []


def test_multi_label_few_shot_draws_k_rows_per_tag_string_seeded():
    import pandas as pd

    few_shot_multilabel = bench_module("few_shot_multilabel")
    frame = pd.DataFrame(
        {"text": [f"t{i}" for i in range(30)], "labels": ["a|b"] * 20 + ["c"] * 7 + ["a"] * 3}
    )
    picked = few_shot_multilabel.few_shot_frame(frame, 4, seed=1)
    assert picked["labels"].value_counts().to_dict() == {"a|b": 4, "c": 4, "a": 3}
    assert picked["text"].is_unique
    assert picked.equals(few_shot_multilabel.few_shot_frame(frame, 4, seed=1))
    assert not picked.equals(few_shot_multilabel.few_shot_frame(frame, 4, seed=2))


def test_flops_count_only_what_runs_where_it_runs():
    throughput_vs_hf = bench_module("throughput_vs_hf")

    profile = {
        "tokens": {"train": 1000, "validation": 100, "test": 100},
        "layer_params": 10,
        "num_layers": 6,
        "head_params": 1,
    }
    hf = throughput_vs_hf.flops("hf_trainer", "freeze_4", 3, profile)
    ours = throughput_vs_hf.flops("nlp_transfer", "freeze_4", 3, profile)
    # Trainer: 2 trained layers + head backward (6x), 4 frozen layers forward (2x), every epoch.
    assert hf["training"] == 3 * 1000 * (6 * 21 + 2 * 40)
    # Ours: the cached prefix does not run in training; its one pass over all splits does count.
    assert ours["training"] == 3 * 1000 * 6 * 21
    assert ours["total"] == ours["training"] + 1200 * 2 * 40 + (3 * 100 + 100) * 2 * 21
    full = throughput_vs_hf.flops("nlp_transfer", "full", 1, profile)
    assert full == throughput_vs_hf.flops("hf_trainer", "full", 1, profile)
    fe = throughput_vs_hf.flops("nlp_transfer", "feature_extraction", 3, profile)
    assert fe == {"training": 0, "total": 1200 * 2 * 60}


def test_inference_reads_our_log_line_and_compares_each_repeat_with_torch(tmp_path):
    inference = bench_module("inference")

    log = "Exporting...\nPredicted 1,008 rows in 6.40 s (157.5 rows/s, torch) -> out.jsonl\n"
    assert inference.predict_phase({}, log) == {"predict": 6.40}
    assert inference.predict_phase({}, "no such line") == {}
    gold = ["pos", "neg", "pos", "neg"]
    outputs = {"torch": ["pos", "neg", "neg", "neg"], "int8": ["pos", "neg", "neg", "pos"]}
    for name, labels in outputs.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(f'{{"label": "{x}"}}\n' for x in labels))
    records = [
        {"arm": arm, "repeat": r, "wall_s": wall, "phases": {"predict": s}, "loaded": False}
        | {"peak_rss_mib": 100.0, "output": str(tmp_path / f"{arm}.jsonl")}
        for arm, r, s, wall in (
            ("torch", 0, 4.0, 10.0),
            ("int8", 0, 1.0, 8.0),
            ("torch", 1, 2.0, 9.0),
            ("int8", 1, 1.0, 9.0),
        )
    ]
    torch_row, int8_row = inference.summarise(records, ["torch", "int8"], gold)
    assert int8_row["speedup_predict_vs_torch"]["values"] == [4.0, 2.0]  # per repeat
    assert int8_row["texts_per_s_predict"]["median"] == 4.0
    assert torch_row["accuracy"] == 0.75 and int8_row["accuracy"] == 0.5
    assert torch_row["label_agreement_vs_torch"] == 1.0
    assert int8_row["label_agreement_vs_torch"] == 0.75


def test_inference_compares_with_the_fastest_pipeline_and_states_the_goal(tmp_path):
    inference = bench_module("inference")
    gold = ["pos", "neg", "pos", "neg"]
    outputs = {
        "torch": ["pos", "neg", "pos", "neg"],
        "onnxruntime_int8": ["pos", "neg", "pos", "pos"],
        "pipeline_bs1": ["pos", "neg", "pos", "neg"],
        "pipeline_bs64": ["pos", "neg", "pos", "neg"],
    }
    for name, labels in outputs.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(f'{{"label": "{x}"}}\n' for x in labels))
    seconds = {"torch": 2.0, "onnxruntime_int8": 1.0, "pipeline_bs1": 8.0, "pipeline_bs64": 4.0}
    records = [
        {"arm": arm, "repeat": 0, "wall_s": 10.0, "phases": {"predict": s}, "loaded": False}
        | {"peak_rss_mib": 100.0, "output": str(tmp_path / f"{arm}.jsonl")}
        for arm, s in seconds.items()
    ]
    rows = inference.summarise(records, list(outputs), gold)
    int8 = rows[1]
    assert int8["best_pipeline"] == "pipeline_bs64"  # the faster batch size, not the default
    assert int8["speedup_predict_vs_best_pipeline"]["values"] == [4.0]
    assert int8["accuracy_diff_vs_torch"] == pytest.approx(-0.25)
    text = inference.markdown(rows, [], 4)
    assert "- onnxruntime_int8: 4.00x pipeline_bs64, accuracy -25.00 points: not met." in text


def test_image_streaming_folders_arms_and_summary(tmp_path):
    streaming = bench_module("image_streaming")
    large = streaming.write_generated_folder(tmp_path / "large", 6)
    small = streaming.link_subset(large, tmp_path / "small", 4)
    assert sorted(p.name for p in small.rglob("*.png")) == [f"gen_{i:06d}.png" for i in range(4)]
    assert (small / "stripes_h" / "gen_000000.png").read_bytes() == (
        large / "stripes_h" / "gen_000000.png"
    ).read_bytes()
    args = streaming.parse_args(["--num_images", "1000", "--small_num_images", "100"])
    assert args.budget_gb == pytest.approx(0.8 * 100 * 3 * 64 * 64 / 1e9)  # both folders over it
    arm = streaming.arm_for("streamed-100", small, 100, args.budget_gb, args, tmp_path)
    assert f"--image_cache_memory_gb={args.budget_gb}" in arm.command
    assert "--cache_frozen_prefix=no" in arm.command and arm.extra["mode"] == "streamed"
    records = [
        {"arm": f"{mode}-{n}", "mode": mode, "num_images": n, "decoded_gb": 0.0, "budget_gb": 1.0}
        | {"wall_s": 1.0, "cpu_s": 1.0, "peak_rss_mib": rss, "phases": {}, "loaded": False}
        | {"test_accuracy": 0.5, "test_loss": loss}
        for mode, n, rss, loss in (
            ("memory", 100, 1000.0, 0.7),
            ("streamed", 100, 990.0, 0.7),
            ("memory", 1000, 1500.0, 0.6),
            ("streamed", 1000, 1000.0, 0.65),
        )
    ]
    summary = streaming.summarise(records)
    assert summary["peak_rss_growth_mib"] == {"memory": 500.0, "streamed": 10.0}
    assert summary["same_numbers"] == {100: True, 1000: False}
    assert "1,000: NO" in streaming.markdown(summary)


def test_text_scaling_arms_and_per_1000_ratios_against_the_smallest_size(tmp_path):
    scaling = bench_module("text_scaling")
    args = scaling.parse_args(["--sizes", "10,20", "--train_samples", "500", "--repeats", "2"])
    arms = scaling.arms_for(10, tmp_path / "x.parquet", 1, args, tmp_path)
    assert [a.name for a in arms] == [
        "data_cold-10", "data_warm-10", "baseline-10", "train_full-10", "train_frozen-10"
    ]  # fmt: skip
    cold, warm = (json.loads(a.command[-1]) for a in arms[:2])
    assert cold.pop("metrics_path") != warm.pop("metrics_path")
    assert cold == warm and cold["cache_dir"] == str(tmp_path / "cache-10-r1")  # warm: cold's
    train = arms[4].command
    assert "--freeze_layers=4" in train and f"--cache_dir={tmp_path / 'cache-10-r1'}" in train
    assert "--max_train_samples=500" in train and "--num_train_epochs=1" in train

    def record(size, kind, repeat, training):
        phases = {"training": training, "tokenize": 1.0, "load_and_check": 1.0}
        return {"arm": f"{kind}-{size}", "size": size, "kind": kind, "repeat": repeat,
                "wall_s": 1.0, "peak_rss_mib": 100.0, "phases": phases}  # fmt: skip

    records = [
        record(size, kind, repeat, training)
        for repeat, scale in ((0, 1.0), (1, 2.0))  # the second repeat is twice as slow
        for size, factor in ((10, 1.0), (20, 1.5))
        for kind in ("data_cold", "data_warm", "baseline", "train_full", "train_frozen")
        for training in [5.0 * factor * scale]
    ]
    figures = scaling.figures_of(records, args)
    full = figures["20"]["train_full"]
    assert full["train_s_per_1000"]["values"] == [15.0, 30.0]  # 7.5 s / 500 samples * 1000
    assert full["per_1000_vs_smallest"]["values"] == [1.5, 1.5]  # paired within each repeat
    assert figures["10"]["train_frozen"]["per_1000_vs_smallest"]["median"] == 1.0
    assert "| 20 |" in scaling.markdown(figures, args)


def test_text_scaling_per_1000_counts_the_samples_actually_trained():
    scaling = bench_module("text_scaling")
    args = scaling.parse_args(["--train_samples", "9600"])
    # 10,000 rows leave 8,000 for training: 110 s over 8,000 samples, not over 9,600
    small = {"phases": {"training": 110.0}, "metrics": {"timings": {"train_samples_per_second": 8000 / 110}}}  # fmt: skip
    assert scaling.per_1000(small, args) == pytest.approx(13.75)
    assert scaling.per_1000({"phases": {"training": 96.0}}, args) == pytest.approx(10.0)


def test_git_sha_is_dirty_for_code_changes_not_for_other_results(tmp_path, monkeypatch):
    import subprocess

    machine_info = bench_module("machine_info")

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "benchmarks" / "results" / "x.md").write_text("old\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(machine_info, "REPO", tmp_path)
    clean = machine_info.git_sha()
    assert len(clean) == 40
    (tmp_path / "benchmarks" / "results" / "x.md").write_text("written by another run\n")
    assert machine_info.git_sha() == clean
    (tmp_path / "code.py").write_text("a = 2\n")
    assert machine_info.git_sha() == clean + "+dirty"


def test_profile_groups_operators_and_reads_phases():
    profile_step = bench_module("profile_step")

    assert profile_step.group_of("aten::addmm") == "matrix products"
    assert profile_step.group_of("aten::_softmax_backward_data") == "attention"
    assert profile_step.group_of("aten::native_layer_norm_backward") == "layer norm"
    assert profile_step.group_of("aten::_fused_adamw_") == "optimizer (fused AdamW)"
    assert profile_step.group_of("aten::mul_") == "element-wise"
    assert profile_step.group_of("aten::t") == "other"
    events = [
        {"name": "forward", "self_cpu_s": 0.1, "cpu_s": 3.0, "count": 2},
        {"name": "backward", "self_cpu_s": 0.1, "cpu_s": 5.0, "count": 2},
        {"name": "aten::addmm", "self_cpu_s": 4.0, "cpu_s": 4.0, "count": 20},
        {"name": "aten::mm", "self_cpu_s": 2.0, "cpu_s": 2.0, "count": 20},
        {"name": "aten::gelu", "self_cpu_s": 0.5, "cpu_s": 0.5, "count": 10},
    ]
    summary = profile_step.summarise(events, step_s=9.0)
    assert summary["phases"] == {"forward": 3.0, "backward": 5.0, "optimizer": 0.0}
    assert summary["groups"] == {"matrix products": 6.0, "activations (GELU, tanh)": 0.5}
    assert [e["name"] for e in summary["top"]] == ["aten::addmm", "aten::mm", "aten::gelu"]


# --- regenerate.py: which committed results a code change makes stale -------------------------

regenerate = bench_module("regenerate")


def _git(repo: Path, *args: str) -> str:
    import subprocess

    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _commit(repo: Path, path: str, text: str) -> str:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"change {path}")
    return _git(repo, "rev-parse", "HEAD")


def _result(repo: Path, sha: str, name: str = "bench") -> regenerate.Result:
    results = repo / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    info = {
        "git_sha": sha,
        "command": f"python benchmarks/{name}.py --settle_s 3",
        "wall_time_s": 90,
    }
    (results / f"{name}.json").write_text(json.dumps({"run_info": info}))
    [result] = [r for r in regenerate.find_results(results) if r.name == name]
    return result


def test_regenerate_calls_a_result_stale_only_when_the_code_it_measures_changed(tmp_path):
    _git(tmp_path, "init", "-q")
    _commit(tmp_path, "nlp_transfer/core.py", "x = 1\n")
    _commit(tmp_path, "benchmarks/bench.py", "print(1)\n")
    sha = _commit(tmp_path, "benchmarks/other.py", "print(2)\n")
    result = _result(tmp_path, sha)
    assert result.minutes == 1.5
    # Docs, another benchmark's script and results are not what this result measures.
    _commit(tmp_path, "docs/index.md", "words\n")
    _commit(tmp_path, "benchmarks/other.py", "print(3)\n")
    _commit(tmp_path, "benchmarks/results/other.json", "{}")
    assert regenerate.classify(result, tmp_path).state == "current"
    # Its own script, or the library, is.
    _commit(tmp_path, "benchmarks/bench.py", "print(4)\n")
    assert regenerate.classify(result, tmp_path).state == "stale"
    assert "benchmarks/bench.py" in result.reason
    sha = _git(tmp_path, "rev-parse", "HEAD")
    result = _result(tmp_path, sha)
    assert regenerate.classify(result, tmp_path).state == "current"
    _commit(tmp_path, "nlp_transfer/core.py", "x = 2\n")
    assert regenerate.classify(result, tmp_path).state == "stale"
    assert "1 file changed since: nlp_transfer/core.py" in result.reason
    # Uncommitted changes at run time, or a commit this clone lacks: stale, and why.
    sha = _git(tmp_path, "rev-parse", "HEAD")
    assert "uncommitted" in regenerate.classify(_result(tmp_path, sha + "+dirty"), tmp_path).reason
    missing = regenerate.classify(_result(tmp_path, "0" * 40), tmp_path)
    assert (missing.state, missing.reason) == (
        "stale",
        f"commit {'0' * 7} is not in this repository",
    )
    (tmp_path / "benchmarks/results/old.json").write_text(json.dumps({"run": {}}))
    [old] = [r for r in regenerate.find_results(tmp_path / "benchmarks/results") if r.name == "old"]
    assert regenerate.classify(old, tmp_path).state == "no command"
    # An uncommitted change to the code would mark every new result +dirty: reported.
    assert regenerate.uncommitted_changes(tmp_path) == []
    (tmp_path / "benchmarks/other.py").write_text("print(5)\n")
    assert regenerate.uncommitted_changes(tmp_path) == [" M benchmarks/other.py"]
    # As machine_info.git_sha counts it: a docs change marks a result +dirty too; results do not.
    (tmp_path / "docs/index.md").write_text("more words\n")
    (tmp_path / "benchmarks/results/other.json").write_text("[]")
    assert regenerate.uncommitted_changes(tmp_path) == [
        " M benchmarks/other.py",
        " M docs/index.md",
    ]


def test_regenerate_plans_stale_results_in_order_within_the_time_budget():
    def result(name, minutes, state="stale"):
        return regenerate.Result(
            Path(name), "python benchmarks/x.py", "a", None, minutes, state, root=Path()
        )

    results = [result("a", 30), result("b", 10, "current"), result("c", 60), result("d", 5)]
    now, later = regenerate.plan(results, max_hours=1.0)
    # "d" would fit after "a", but the order is kept: the next session starts with "c".
    assert [r.path.name for r in now] == ["a"]
    assert [r.path.name for r in later] == ["c", "d"]
    now, later = regenerate.plan(results, max_hours=None)
    assert ([r.path.name for r in now], later) == (["a", "c", "d"], [])
    unknown = regenerate.Result(
        Path("e"), "python benchmarks/x.py", "a", None, None, "stale", root=Path()
    )
    assert regenerate.plan([unknown], max_hours=0.1)[0] == []  # unknown: assumed 10 min


def test_regenerate_replaces_this_machines_paths_in_a_recorded_command(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    record = (
        "python benchmarks/inference.py --model_dir /elsewhere/model --settle_s 30 --log_dir=/x"
    )
    (results / "inference.json").write_text(json.dumps({"run_info": {"command": record}}))
    (results / "bf16.json").write_text(
        json.dumps({"run_info": {"command": "python benchmarks/bf16.py"}})
    )
    (results / "odd.json").write_text(json.dumps({"run_info": {"command": "bash run.sh"}}))
    found = {r.name: r for r in regenerate.find_results(results)}
    command = regenerate.command_for(found["inference"], tmp_path / "logs", tmp_path / "m")
    assert command[0] == sys.executable
    assert command[1:] == [
        "benchmarks/inference.py",
        "--settle_s",
        "30",
        "--log_dir",
        str(tmp_path / "logs" / "inference"),
        "--model_dir",
        str(tmp_path / "m"),
    ]
    # A flag the script never took is not added.
    assert regenerate.command_for(found["bf16"], tmp_path, tmp_path)[1:] == ["benchmarks/bf16.py"]
    with pytest.raises(ValueError, match="regenerate it by hand"):
        regenerate.command_for(found["odd"], tmp_path, tmp_path)


def test_regenerate_names_the_results_to_choose_from_for_an_unknown_one(capsys):
    assert regenerate.main(["--only", "frozen_vs_full,no_such_result", "--list"]) == 2
    err = capsys.readouterr().err
    assert "--only no_such_result: no such result" in err and "frozen_vs_full" in err


def test_regenerate_deletes_a_benchmarks_scratch_on_success_and_keeps_it_on_failure(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the scratch folders themselves go
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR in this process
    # The child writes a file into a temp folder of its own, as a benchmark's arms do, and says where.
    write = (
        "import pathlib, sys, tempfile; d = pathlib.Path(tempfile.mkdtemp()); "
        "(d / 'model.bin').write_bytes(b'x' * 1000); print(d); sys.exit(int(sys.argv[1]))"
    )
    ok_log, bad_log = tmp_path / "ok.log", tmp_path / "bad.log"
    assert regenerate.run_in_scratch([sys.executable, "-c", write, "0"], ok_log, "ok") == (0, None)
    written = Path(ok_log.read_text().strip())
    assert written.parent.name.startswith("regenerate-ok-")  # under the scratch, not the system tmp
    assert not written.parent.exists()

    code, kept = regenerate.run_in_scratch([sys.executable, "-c", write, "3"], bad_log, "bad")
    assert code == 3 and kept is not None and kept.name.startswith("regenerate-bad-")
    written = Path(bad_log.read_text().strip())
    assert written.parent == kept and (written / "model.bin").stat().st_size == 1000


def test_every_committed_result_records_a_command_that_regenerate_can_run(tmp_path):
    results = regenerate.find_results()
    assert len(results) >= 15
    for result in results:
        assert result.command and result.git_sha, f"{result.name}: no command or commit recorded"
        command = regenerate.command_for(result, tmp_path, tmp_path)  # raises when not runnable
        assert (BENCHMARKS.parent / command[1]).is_file(), f"{result.name}: {command[1]} is gone"


def test_regenerate_calls_a_result_from_another_cpu_stale(tmp_path):
    _git(tmp_path, "init", "-q")
    sha = _commit(tmp_path, "nlp_transfer/core.py", "x = 1\n")
    result = _result(tmp_path, sha)
    here = {"cpu": "AMD EPYC", "cpu_flags": {"avx2": True, "avx512_bf16": True, "amx_bf16": False}}
    assert regenerate.classify(result, tmp_path, cpu=here).state == "current"  # no CPU recorded
    result.cpu = {"cpu": "AMD EPYC", "cpu_flags": dict(here["cpu_flags"])}
    assert regenerate.classify(result, tmp_path, cpu=here).state == "current"
    result.cpu["cpu_flags"]["avx512_bf16"] = False
    assert regenerate.classify(result, tmp_path, cpu=here).state == "stale"
    assert result.reason == "made on a AMD EPYC with other instruction sets (avx512_bf16 off there)"
    result.cpu = {"cpu": "Intel Xeon", "cpu_flags": dict(here["cpu_flags"])}
    assert regenerate.classify(result, tmp_path, cpu=here).reason.startswith("made on another CPU")
    # find_results reads the CPU from the result's machine record
    machine = {"cpu": "Intel Xeon", "cpu_flags": {"avx2": True}, "cores": 2}
    path = tmp_path / "benchmarks" / "results" / "bench.json"
    document = json.loads(path.read_text()) | {"machine": machine}
    path.write_text(json.dumps(document))
    [found] = regenerate.find_results(path.parent)
    assert found.cpu == {"cpu": "Intel Xeon", "cpu_flags": {"avx2": True}}


def test_time_to_accuracy_targets_the_trainers_best_and_takes_the_fastest_run_reaching_it():
    tta = bench_module("time_to_accuracy")

    def run(system, arm, accuracy, wall):
        return {"system": system, "arm": arm, "accuracy": accuracy, "wall_s": wall}

    records = [
        run("hf_trainer", "t-e1", 0.846, 100.0),
        run("hf_trainer", "t-e3", 0.866, 300.0),
        run("ours", "o-e1", 0.850, 90.0),
        run("ours", "o-e3", 0.867, 280.0),
        run("ours", "o-bf16-e3", 0.870, 200.0),
    ]
    result = tta.time_to_target(records)
    assert result["target_accuracy"] == 0.866
    assert result["systems"]["hf_trainer"]["run"] == "t-e3"
    assert result["systems"]["ours"] == {"run": "o-bf16-e3", "wall_s": 200.0, "best_accuracy": 0.87}
    assert result["ours_time_over_trainer"] == pytest.approx(200 / 300)
    assert result["goal_met"] is False
    slower = tta.time_to_target([*records[:2], run("ours", "o-e1", 0.80, 50.0)])
    assert slower["systems"]["ours"]["run"] is None and "ours_time_over_trainer" not in slower
    with pytest.raises(SystemExit):
        tta.parse_args(["--runs", "fp16:2"])


def test_int8_settings_choose_most_labels_kept_then_the_faster():
    int8 = bench_module("int8_settings")
    rows = [
        {"setting": "a", "label_agreement": 0.962, "predict_s": 1.0},
        {"setting": "b", "label_agreement": 0.983, "predict_s": 1.2},
        {"setting": "c", "label_agreement": 0.9825, "predict_s": 1.1},
    ]
    assert int8.choose(rows)["setting"] == "c"  # within 0.1 points of b, faster
    rows[2]["label_agreement"] = 0.97
    assert int8.choose(rows)["setting"] == "b"


def test_per_seed_rows_summarise_each_arm_over_its_seeds():
    records = [
        {"arm": "a", "seed": s, "wall_s": w, "phases": {"training": w - 10}, "loaded": s == 2}
        for s, w in ((1, 100.0), (2, 120.0))
    ]
    (row,) = harness.per_seed_rows(records, lambda r: 0.8 + r["seed"] / 100)
    assert row["seeds"] == [1, 2] and row["accuracy"] == pytest.approx([0.81, 0.82])
    assert row["accuracy_mean"] == pytest.approx(0.815) and row["loaded"] is True
    assert row["wall_s"]["median"] == 110.0 and row["training_s"]["median"] == 100.0
    assert harness.per_seed_cells(row)[:2] == ["a *", "0.8150 ± 0.0071 (0.8100, 0.8200)"]


def test_serve_load_goals_compare_batching_with_the_pipeline_server_at_32_clients():
    serve_load = bench_module("serve_load")

    def row(arm, clients, rps, p99):
        return {"arm": arm, "clients": clients, "requests_per_s": rps, "p99_ms": p99}

    rows = [
        row("pipeline", 32, 50.0, 900.0),
        row("ours-torch-batching", 32, 160.0, 400.0),  # 3.2x, lower p99: met
        row("ours-int8-batching", 32, 400.0, 950.0),  # faster but a worse p99: not met
        row("ours-torch-no_batching", 32, 60.0, 800.0),  # not a batching arm: no goal
        row("ours-torch-batching", 8, 10.0, 10.0),  # other concurrencies: no goal
    ]
    clean = {"ok": 10, "error_status": 0, "lost": 0, "refused": 3}
    goals = serve_load.goals(rows, {"sigterm": clean, "long": clean | {"lost": 1}})
    assert goals["ours-torch-batching at 32 clients"].endswith(": met")
    assert goals["ours-torch-batching at 32 clients"].startswith("3.20x")
    assert goals["ours-int8-batching at 32 clients"].endswith("not met")
    assert not any("no_batching" in k for k in goals)
    assert goals["sigterm"] == "met" and goals["long"] == "not met"
    at32 = {r["arm"]: r for r in serve_load.at_32_clients(rows)}
    assert set(at32) == {"pipeline", "ours-torch-batching", "ours-int8-batching",
                         "ours-torch-no_batching"}  # fmt: skip
    assert at32["ours-int8-batching"]["vs_pipeline"] == 8.0
    assert at32["pipeline"]["vs_pipeline"] == 1.0


def test_serve_settings_reads_prometheus_samples_and_covers_both_backends():
    serve_settings = bench_module("serve_settings")
    text = "# HELP x\nnlp_transfer_batch_size_sum 42.0\nnlp_transfer_batch_size_count 4.0\n"
    assert serve_settings.metric(text, "nlp_transfer_batch_size_sum") == 42.0
    assert serve_settings.metric(text, "nlp_transfer_batch_size_count") == 4.0
    assert serve_settings.metric(text, "nlp_transfer_texts_total") == 0.0
    arms = serve_settings.arms()
    assert (
        arms["torch"] == [] and "--max_wait_ms" in arms["int8 --dynamic_batching --max_wait_ms 5"]
    )
    assert all("--dynamic_batching" in flags for name, flags in arms.items() if "int8" in name)
    assert sum("--num_threads" in flags for flags in arms.values()) == 2


def test_long_texts_goal_compares_chunks_per_seed_and_needs_less_time_than_512():
    long_texts = bench_module("long_texts")

    def record(arm, seed, accuracy, wall_s):
        return {"arm": arm, "seed": seed, "test": {"accuracy": accuracy, "f1_macro": accuracy},
                "wall_s": wall_s, "train_runtime_s": wall_s / 2, "windows_per_post": 1.0}  # fmt: skip

    records = [
        record("truncate_128", 42, 0.50, 100), record("truncate_128", 43, 0.52, 100),
        record("chunks_128", 42, 0.53, 300), record("chunks_128", 43, 0.54, 300),
        record("truncate_512", 42, 0.535, 200),  # one seed only: compared on that seed
    ]  # fmt: skip
    goals = {g["versus"]: g for g in long_texts.goal(records)}
    assert goals["truncate_128"]["accuracy_points"] == pytest.approx(2.5)
    assert goals["truncate_128"]["met"]
    assert goals["truncate_512"]["seeds"] == [42]
    assert goals["truncate_512"]["accuracy_points"] == pytest.approx(-0.5)
    assert goals["truncate_512"]["wall_time_ratio"] == pytest.approx(1.5)
    assert not goals["truncate_512"]["met"]  # within 0.5 points, but slower
    rows = {a["arm"]: a for a in long_texts.summary(records)}
    assert rows["chunks_128"]["accuracy"] == pytest.approx(0.535)
    assert rows["chunks_128"]["seeds"] == [42, 43]


def test_audit_goals_need_precision_and_recall_at_ten_percent_and_every_monitor_check():
    audit_bench = bench_module("audit")
    cell = {"rate": 0.1, "fold_classifier": "ensemble", "filter_by": "both"}
    records = [
        cell | {"set": "sentiment", "precision": 0.8, "recall": 0.7},
        cell | {"set": "sentiment", "precision": 0.7, "recall": 0.6},
        cell | {"set": "spam", "precision": 0.9, "recall": 0.5},
        cell | {"set": "spam", "rate": 0.2, "precision": 0.1, "recall": 0.1},  # not the 10% cell
    ]
    monitor = {
        "same_distribution": [{"verdict": "no drift"}] * 18 + [{"verdict": "drift"}] * 2,
        "other_domains": {"sms_spam": {"verdict": "drift"}, "amazon": {"verdict": "no drift"}},
        "label_shift": [{"error": 0.01}, {"error": 0.06}],
    }
    goals = audit_bench.summarize({"label_errors": records, "monitor": monitor})
    assert goals["label_errors_10pct_sentiment_ensemble_both"]["met"]
    assert goals["label_errors_10pct_spam_ensemble_both"] == {
        "precision": 0.9, "recall": 0.5, "met": False
    }  # fmt: skip
    assert goals["monitor_same_not_flagged"] == {"share": 0.9, "met": True}
    assert not goals["monitor_other_domains_flagged"]["met"]
    assert goals["monitor_label_shift_error"] == {"max_error": 0.06, "met": False}


def test_audit_benchmark_flips_the_same_rows_for_a_rate_and_seed():
    audit_bench = bench_module("audit")
    first = audit_bench._flipped_rows(1000, 0.1, 3)
    assert (first == audit_bench._flipped_rows(1000, 0.1, 3)).all()
    assert 60 < len(first) < 140
    assert not np.array_equal(first, audit_bench._flipped_rows(1000, 0.1, 4))


def test_strategy_race_summary_checks_the_goals_and_reuses_earlier_runs(tmp_path):
    import argparse

    race = bench_module("strategy_race")

    def record(method, accuracy, wall_s=10.0, **extra):
        return {"row": "sentiment_1000", "seed": 0, "method": method, "accuracy": accuracy,
                "wall_s": wall_s, **extra}  # fmt: skip

    earlier = tmp_path / "earlier.json"
    singles = [record("tfidf", 0.685), record("full", 0.830), record("auto", 0.5, budget_s=1)]
    earlier.write_text(json.dumps({"records": singles}))
    now = [record("auto", 0.827, wall_s=300.0, budget_s=900.0, winner="full")]
    reused = race.reused_records(argparse.Namespace(reuse=str(earlier)), now)
    assert [r["method"] for r in reused] == ["tfidf", "full"]  # not the earlier auto
    (summary,) = race.summarise(now + reused)
    assert summary["best_single"] == "full"
    assert summary["gap_to_best"] == pytest.approx(-0.003)
    assert summary["within_half_point"] and summary["not_below_tfidf"] and summary["within_budget"]
    assert "0.830 (10 s) †" in race.markdown([summary])
    late = [record("auto", 0.80, wall_s=901.0, budget_s=900.0, winner="lora")]
    (missed,) = race.summarise(late + reused)
    assert missed["within_half_point"] is False and missed["within_budget"] is False


def test_strategy_race_takes_singles_the_race_ran_to_the_end_from_its_leaderboard():
    race = bench_module("strategy_race")
    metrics = {"test": {"accuracy": 0.83}, "race": {"winner": "full", "spent_s": 250.0}}
    metrics["race"]["leaderboard"] = [
        {"candidate": "full", "state": "complete", "value": 0.84, "seconds": 120.0,
         "epochs_run": 4, "test": {"accuracy": 0.83}},
        {"candidate": "tfidf", "state": "complete", "value": 0.70, "seconds": 9.0,
         "epochs_run": 1, "test": {"accuracy": 0.68}},
        {"candidate": "lora", "state": "pruned", "value": 0.60, "seconds": 30.0, "epochs_run": 2},
        {"candidate": "freeze_half", "state": "complete", "value": 0.80, "seconds": 90.0,
         "epochs_run": 3, "stopped_by_budget": 3, "test": {"accuracy": 0.79}},
    ]  # fmt: skip
    cell = {"row": "sentiment_1000", "seed": 1, "method": "auto", "budget_s": 900.0}
    auto = race.record_of(cell | {"wall_s": 300.0, "metrics": metrics})
    assert auto["candidates"]["lora"] == {
        "state": "pruned", "validation": 0.60, "seconds": 30.0, "epochs_run": 2, "accuracy": None,
    }  # fmt: skip
    assert auto["candidates"]["freeze_half"]["stopped_by_budget"] == 3
    names = ["tfidf", "feature_extraction", "freeze_half", "lora", "full"]
    taken, left = race.singles_from_race(auto, names)
    assert [(r["method"], r["accuracy"], r["wall_s"]) for r in taken] == [
        ("tfidf", 0.68, 9.0),
        ("full", 0.83, 120.0),
    ]
    # skipped, cut short by the budget, or pruned: run alone
    assert left == ["feature_extraction", "freeze_half", "lora"]
    (summary,) = race.summarise([auto, *taken])
    assert "0.830 (120 s) ‡" in race.markdown([summary])


def test_calibration_ece_reference_finds_the_noise_floor_and_the_test_optimal_temperature():
    """Labels drawn from known probabilities: the model is calibrated at temperature 1, so the
    test-optimal factor is near 1 and its ECE within the floor; the same logits made twice as
    sharp need a factor near 2."""
    from scipy.special import softmax

    calibration = bench_module("calibration")
    rng = np.random.default_rng(3)
    logits = rng.normal(0.0, 2.0, size=(4000, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(logits, axis=1)])
    calibrated = calibration.ece_reference(softmax(logits, axis=1), labels, draws=200)
    assert calibrated["best_temperature_factor"] == pytest.approx(1.0, abs=0.1)
    assert 0.0 < calibrated["floor_mean"] < calibrated["floor_p95"] < 0.05
    assert calibrated["best_temperature_ece"] < calibrated["floor_p95"]
    sharp = calibration.ece_reference(softmax(2 * logits, axis=1), labels, draws=200)
    assert sharp["best_temperature_factor"] == pytest.approx(2.0, abs=0.2)


def test_calibration_paired_comparison_separates_noise_from_a_real_change():
    """The same probabilities: no change, a zero-width interval. Small independent jitter (what
    int8 does): an ECE change whose paired interval holds 0, labels nearly all kept. Every
    probability pulled towards certainty: ECE and NLL rise, the interval above 0."""
    from scipy.special import softmax

    calibration = bench_module("calibration")
    rng = np.random.default_rng(5)
    logits = rng.normal(0.0, 2.0, size=(2000, 2))
    labels = np.array([rng.choice(2, p=p) for p in softmax(logits, axis=1)])
    reference = softmax(logits, axis=1)
    same = calibration.paired_comparison(reference, reference.copy(), labels, draws=200)
    assert same["ece_diff"] == 0.0 and same["ece_diff_90"] == [0.0, 0.0]
    assert same["nll_diff"] == 0.0 and same["label_agreement"] == 1.0
    jitter = softmax(logits + rng.normal(0.0, 0.05, size=logits.shape), axis=1)
    noisy = calibration.paired_comparison(reference, jitter, labels, draws=200)
    assert noisy["ece_diff_90"][0] < 0.0 < noisy["ece_diff_90"][1]
    assert noisy["label_agreement"] > 0.97 and 0.0 < noisy["mean_abs_top_change"] < 0.02
    sharp = calibration.paired_comparison(reference, softmax(3 * logits, axis=1), labels, draws=200)
    assert sharp["ece_diff_90"][0] > 0.0 and sharp["nll_diff"] > 0.1 and sharp["brier_diff"] > 0.0


def test_calibration_goals_are_read_on_each_sets_mean_over_seeds():
    """Two runs of one set: ECE, coverage, abstention and int8 read on their means; the int8
    column also carries the largest single run's difference."""
    calibration = bench_module("calibration")

    def run(seed, ece_after, coverage, precision, int8_diff):
        return {
            "set": "sentiment", "seed": seed,
            "conformal": {c: {"coverage": float(c) + coverage} for c in calibration.COVERAGES},
            "calibration": {"before": {"ece": 0.06}, "after": {"ece": ece_after}},
            "abstention": {"0.95": {"test": {"precision": precision}}},
            "test_ece_float32": 0.03, "test_ece_int8": 0.03 + int8_diff,
        }  # fmt: skip

    (entry,) = calibration.mean_over_seeds(
        [run(1, 0.026, 0.01, 0.94, 0.004), run(2, 0.030, -0.06, 0.95, -0.015)]
    )
    assert entry["ece"]["after"] == pytest.approx(0.028) and entry["ece_goal_met"]
    assert entry["coverage"]["0.9"]["mean"] == pytest.approx(0.875)
    assert not entry["coverage_goal_met"]  # the mean is 2.5 points under each target
    assert entry["abstention_precision"]["0.95"] == pytest.approx(0.945)
    assert entry["int8_ece_diff_mean"] == pytest.approx(-0.0055)
    assert entry["int8_ece_diff_max"] == pytest.approx(-0.015)
    assert entry["int8_goal_met"]
    (far,) = calibration.mean_over_seeds([run(1, 0.04, 0.0, 0.95, 0.012)])
    assert not far["int8_goal_met"] and not far["ece_goal_met"]


def test_strategy_race_merges_other_seeds_of_earlier_results(tmp_path):
    race = bench_module("strategy_race")

    def record(seed, method, accuracy):
        return {"row": "sentiment_k16", "seed": seed, "method": method, "accuracy": accuracy,
                "wall_s": 10.0, "budget_s": 300.0}  # fmt: skip

    earlier = tmp_path / "earlier.json"
    runs = [record(0, "auto", 0.72), record(0, "full", 0.56), record(1, "auto", 0.10)]
    earlier.write_text(json.dumps({"run_info": {"git_sha": "61a4165abc"}, "records": runs}))
    now = [record(1, "auto", 0.70), record(1, "full", 0.55)]
    merged = race.merged_records(str(earlier), now)
    assert [(r["seed"], r["method"]) for r in merged] == [(0, "auto"), (0, "full")]  # not seed 1
    assert merged[0]["merged_from"] == f"{earlier} @ 61a4165"
    (summary,) = race.summarise(now + merged)
    assert summary["methods"]["auto"]["seeds"] == 2
    assert summary["methods"]["auto"]["accuracy_mean"] == pytest.approx(0.71)
    assert f"`{earlier} @ 61a4165`" in race.markdown([summary], (merged[0]["merged_from"],))


def test_calibration_coverage_range_holds_nine_in_ten_exchangeable_runs():
    """Split conformal on exchangeable continuous scores, 600 times: the test coverage falls
    inside the predicted 90% range about 90% of the time (binomial noise of 600 runs: +-2.1)."""
    import math

    calibration = bench_module("calibration")
    n_cal, n_test, target = 100, 200, 0.9
    low, high = calibration.coverage_range(n_cal, n_test, target)
    assert low < target < high
    rng = np.random.default_rng(1)
    inside = 0
    for _ in range(600):
        cal, test = rng.random(n_cal), rng.random(n_test)
        q = np.sort(cal)[math.ceil((n_cal + 1) * target) - 1]
        inside += low <= np.mean(test <= q) <= high
    assert 0.86 <= inside / 600 <= 0.94


def test_audit_merge_keeps_the_earlier_parts_not_run_now_and_says_where_they_came_from(tmp_path):
    import json

    audit_bench = bench_module("audit")
    earlier = {
        "run_info": {"git_sha": "abc", "command": "python benchmarks/audit.py"},
        "machine": {"cpu": "AMD EPYC"},
        "label_errors": [{"set": "spam"}],
        "leakage": {"recall": {"exact": 1.0, "near": 0.5}},
    }
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(earlier), encoding="utf-8")
    document = {"run_info": {}, "machine": {"cpu": "Intel"}, "leakage": {"recall": {"near": 0.99}}}
    audit_bench.merge_earlier(document, path, ["leakage"])
    assert document["label_errors"] == [{"set": "spam"}]
    assert document["leakage"]["recall"] == {"near": 0.99}  # this run's part stays
    assert document["run_info"]["earlier"] == [
        {"file": str(path), "parts": ["label_errors"], "run_info": earlier["run_info"],
         "cpu": "AMD EPYC"}
    ]  # fmt: skip
    # merged again: a part the earlier result had itself merged keeps its own source
    run_info = document["run_info"] | {"git_sha": "def", "command": "audit.py --parts leakage"}
    path.write_text(json.dumps(document | {"run_info": run_info}), encoding="utf-8")
    again = {"run_info": {}, "machine": {"cpu": "Intel"}, "label_errors": [{"set": "new"}]}
    audit_bench.merge_earlier(again, path, ["label_errors"])
    assert again["leakage"]["recall"] == {"near": 0.99}
    assert [(s["parts"], s["cpu"]) for s in again["run_info"]["earlier"]] == [
        (["leakage"], "Intel")
    ]
    header = audit_bench.markdown(
        {"run_info": again["run_info"], "machine": again["machine"], "goals": {}}
    )
    assert "Parts leakage come from an earlier run on Intel (def: audit.py --parts" in header


def test_conformal_resplit_finds_an_unlucky_split_and_not_an_ordinary_one():
    import numpy as np

    resplit = bench_module("conformal_resplit").resplit
    rng = np.random.default_rng(0)
    calibration, test = rng.exponential(size=500), rng.exponential(size=1000)
    ordinary = resplit(calibration, test, 0.9, resamples=500)
    assert 0.1 < ordinary["share_at_or_below"] < 0.95
    assert ordinary["resplit_5_95"][0] < 0.9 < ordinary["resplit_5_95"][1]
    shifted = resplit(calibration, test * 1.5, 0.9, resamples=500)  # test residuals larger
    assert shifted["share_at_or_below"] < 0.01 and shifted["observed"] < 0.85


def test_audit_ranking_bound_reads_the_quality_ranking_at_the_goal_recall():
    """A classifier that separates the flipped rows gives precision 1 at the goal's recall; one
    that cannot (the same probabilities everywhere) gives about the flip rate."""
    audit_bench = bench_module("audit")
    rng = np.random.default_rng(0)
    given = rng.integers(0, 2, size=400)
    flipped = rng.choice(400, size=40, replace=False)
    sharp = np.full((400, 2), 0.1)
    sharp[np.arange(400), given] = 0.9  # confident in the given label...
    sharp[flipped] = sharp[flipped][:, ::-1]  # ...except where it was flipped
    bound = audit_bench.ranking_bound(given, sharp, flipped)
    assert bound["ranked_precision_at_goal_recall"] == 1.0
    assert bound["ranked_average_precision"] == pytest.approx(1.0)
    blind = audit_bench.ranking_bound(given, np.full((400, 2), 0.5), flipped)
    assert blind["ranked_precision_at_goal_recall"] < 0.3
    assert blind["ranked_average_precision"] < 0.3


def test_audit_merge_joins_the_recovery_seeds_this_run_did_not_make(tmp_path):
    audit_bench = bench_module("audit")
    row = {"flipped": 8, "noisy": {"accuracy": 0.7}, "clean": {"accuracy": 0.8},
           "cleaned": {"accuracy": 0.75, "train_rows": 90}, "recovered_share": 0.5}  # fmt: skip
    earlier = {
        "run_info": {"git_sha": "abcdef123", "command": "audit.py --parts recovery"},
        "machine": {"cpu": "Intel"},
        "recovery": [row | {"set": "spam", "seed": 0}, row | {"set": "spam", "seed": 1}],
    }
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(earlier), encoding="utf-8")
    document = {
        "run_info": {},
        "machine": {"cpu": "Intel"},
        "recovery": [row | {"set": "spam", "seed": 1, "recovered_share": 0.9}],
    }
    audit_bench.merge_earlier(document, path, ["recovery"])
    seeds = [(r["seed"], r["recovered_share"], "merged_from" in r) for r in document["recovery"]]
    assert seeds == [(0, 0.5, True), (1, 0.9, False)]  # seed 1 is this run's
    assert "abcdef1" in document["recovery"][0]["merged_from"]


def test_audit_recovery_variant_drops_the_label_issues_alone():
    """label_issues_only keeps the duplicates --write_cleaned drops, and the summary reads the
    variant's recovered share on the same seeds' noisy and clean runs."""
    audit_bench = bench_module("audit")
    noisy = pd.DataFrame({"text": list("abcdef"), "label": ["x", "y"] * 3})
    suspects = pd.DataFrame(
        {"split": ["train", "train", "train", "test"], "row": [1, 4, 2, 0],
         "reason": ["label_issue", "label_issue", "duplicate", "label_issue"]}
    )  # fmt: skip
    kept = audit_bench._variant_rows(noisy, suspects, "label_issues_only")
    assert list(kept["text"]) == ["a", "c", "d", "f"]  # rows 1 and 4 out, the duplicate stays
    with pytest.raises(ValueError, match="--recovery_variants"):
        audit_bench._variant_rows(noisy, suspects, "relabel")
    row = {"set": "spam", "seed": 0, "noisy": {"accuracy": 0.90}, "clean": {"accuracy": 0.94},
           "cleaned": {"accuracy": 0.91}, "label_issues_only": {"accuracy": 0.93}}  # fmt: skip
    goals = audit_bench.summarize({"recovery": [row]})
    assert goals["recovery_spam"]["recovered_share"] == pytest.approx(0.25)
    assert goals["recovery_spam_label_issues_only"]["recovered_share"] == pytest.approx(0.75)
    assert goals["recovery_spam_label_issues_only"]["met"]


def test_calibrators_fit_a_bend_that_one_temperature_cannot():
    """Probabilities too soft where confident and too sharp in the middle (the sentiment runs'
    shape): isotonic regression and histogram binning fitted on one sample lower the ECE on
    another, where the identity map (the saved temperature) does not."""
    calibrators = bench_module("calibrators")
    rng = np.random.default_rng(0)

    def sample(n):
        z = rng.normal(scale=2.0, size=n)
        p_true = 1 / (1 + np.exp(-np.sign(z) * np.abs(z) ** 1.8))
        return 1 / (1 + np.exp(-z)), (rng.random(n) < p_true).astype(int)

    (p_fit, y_fit), (p_new, y_new) = sample(3000), sample(3000)
    maps = calibrators.fitted_maps(p_fit, y_fit)
    ece = {m: calibrators.scores(f(p_new), y_new)["ece"] for m, f in maps.items()}
    assert ece["isotonic"] < 0.75 * ece["temperature"]
    assert ece["histogram"] < ece["temperature"]
    assert set(ece) == set(calibrators.METHODS)


def test_calibration_merge_keeps_only_the_runs_not_rerun(tmp_path):
    """--merge joins an earlier result's runs; a (set, seed) this run repeats replaces its
    earlier row, and the note names the runs that came from the earlier result."""
    calibration = bench_module("calibration")
    earlier = {
        "settings": {"seed": 42},
        "summary": [{"set": "sentiment"}, {"set": "scores"}, {"set": "spam", "seed": 43}],
        "records": [{"set": "sentiment"}, {"set": "scores"}, {"set": "spam", "seed": 43}],
        "run_info": {"command": "calibration.py", "git_sha": "abcdef0123", "date": "2026-12-06"},
        "machine": {"cpu": "Intel Xeon"},
    }
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(earlier))
    rows, records, note = calibration.merged_rows(str(path), frozenset({("sentiment", 42)}))
    assert rows == [{"set": "scores", "seed": 42}, {"set": "spam", "seed": 43}]
    assert [r["set"] for r in records] == ["scores", "spam"]
    assert "scores (42), spam (43)" in note and "sentiment" not in note
    older = "Runs of seed(s) 41 come from an earlier run (`--merge`): `x` at 1234567."
    path.with_suffix(".md").write_text(f"header\n\n{older}\n\nIn that run: {older}\n")
    note = calibration.merged_rows(str(path))[2]
    assert f"In that run: {older}" in note and f"In that run: In that run: {older}" in note


def test_conformal_shift_weights_restore_coverage_where_only_the_inputs_moved():
    """Weighted split conformal (Tibshirani et al. 2019): equal weights give split conformal's
    threshold; under a pure covariate shift (P(y | x) fixed) whose residuals grow where the new
    rows are, split conformal under-covers and the estimated weights restore the target; the
    vectorised sets are aps_sets' per row."""
    from nlp_transfer.metrics.conformal import aps_sets, conformal_quantile

    shift = bench_module("conformal_shift")
    rng = np.random.default_rng(0)
    scores = rng.random(99)
    for coverage in (0.8, 0.9, 0.95):
        equal = shift.weighted_thresholds(scores, np.ones(99), np.ones(3), coverage)
        assert np.array_equal(equal, np.full(3, conformal_quantile(scores, coverage)))
    assert np.isinf(shift.weighted_thresholds(scores, np.ones(99), np.array([1e4]), 0.9)[0])

    def rows(n, mean):
        x = rng.normal(mean, 1.0, size=n)
        return x, np.abs(rng.normal(size=n) * (0.2 + np.abs(x)))  # |y - f(x)|, spread grows

    (held_x, held_v), (new_x, new_v) = rows(3000, 0.0), rows(6000, 1.5)
    w = shift.shift_weights(held_x[:, None], new_x[:, None], c=1.0)
    assert w["domain_auc"] > 0.8 and w["effective_rows"] < 1500
    for coverage in (0.8, 0.9):
        plain = np.mean(new_v <= conformal_quantile(held_v, coverage))
        weighted = np.mean(
            new_v <= shift.weighted_thresholds(held_v, w["held"], w["new"], coverage)
        )
        assert plain < coverage - 0.05 and abs(weighted - coverage) < 0.025
    same = shift.shift_weights(held_x[:, None], rng.normal(0.0, 1.0, size=(3000, 1)))
    assert abs(same["domain_auc"] - 0.5) < 0.05 and same["effective_rows"] > 2850

    probs, labels = rng.dirichlet(np.ones(4), size=200), rng.integers(0, 4, size=200)
    u, thresholds = rng.random(200), rng.random(200)
    sets = [aps_sets(probs[i : i + 1], thresholds[i], u[i : i + 1])[0] for i in range(200)]
    report = shift.set_coverage(probs, labels, u, thresholds)
    assert report["coverage"] == np.mean([y in s for y, s in zip(labels, sets, strict=True)])
    assert report["mean_set_size"] == np.mean([len(s) for s in sets])


def test_conformal_shift_refit_scores_come_from_labelled_new_rows():
    """--parts refit: scores from K labelled new rows cover the other new rows as asked, even
    where the labels follow the texts differently from the calibration period (here the model
    is over-confident on the new rows, so the calibration period's threshold under-covers)."""
    from nlp_transfer.metrics.conformal import aps_scores, conformal_quantile

    shift = bench_module("conformal_shift")
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(5, 0.3), size=6000)
    flat = 0.5 * probs + 0.5 / 5  # what the labels follow on the new rows
    labels = np.array([rng.choice(5, p=p) for p in flat])
    u = rng.random(6000)
    old = np.array([rng.choice(5, p=p) for p in probs[:1000]])  # calibration period
    old_q = conformal_quantile(aps_scores(probs[:1000], old, u[:1000]), 0.9)
    stale = shift.set_coverage(probs, labels, u, np.full(6000, old_q))["coverage"]
    report = shift.refit_coverage(probs, labels, u, rows=1000, seed=0)
    assert report["labelled_rows"] == 1000 and report["scored_rows"] == 5000
    assert stale < 0.85
    for c in (0.8, 0.9, 0.95):
        assert abs(report[str(c)]["coverage"] - c) < 0.025
    row = {"seed": 0, "new": "x", "rows": 6000, "accuracy": 0.5, "refit": report,
           "split_conformal": report}  # fmt: skip
    assert "refit on 1000 labelled new rows" in shift.markdown([row], "cpu")
    # abstention: validation's threshold is chosen where the labels follow the probabilities;
    # on new rows whose labels follow softened ones (over-confidence), it falls short of 0.95
    # and only the threshold chosen again on labelled new rows keeps it
    from nlp_transfer.metrics.selective import select_abstention_threshold

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(5, 0.1), size=20000)
    old = np.array([rng.choice(5, p=p) for p in probs[:2000]])  # validation
    soft = probs**0.6 / (probs**0.6).sum(axis=1, keepdims=True)
    new_labels = np.array([rng.choice(5, p=p) for p in soft])
    trained = select_abstention_threshold(probs[:2000], old, 0.95)
    u = rng.random(20000)
    report = shift.refit_coverage(probs, new_labels, u, 2000, 0, trained_thresholds={0.95: trained})
    gate = report["abstention"]["0.95"]
    assert gate["trained"]["precision"] < 0.9 and abs(gate["refit"]["precision"] - 0.95) < 0.025
    assert gate["refit"]["threshold"] > trained
    assert gate["refit"]["coverage"] < gate["trained"]["coverage"]
    row["refit"] = report
    table = shift.markdown([row], "cpu")
    assert "validation's threshold -> refit's" in table and "0.95: 0." in table


problem_types = bench_module("problem_types")


def test_pickled_frames_are_read_with_only_the_types_a_plain_frame_holds():
    import lzma
    import pickle

    columns = {
        "text": ["a tweet", "another"],
        "created_at": ["2014-07-02T12:00:00Z", "2016-01-01T00:00:00Z"],
        "retweet_count": [3, 40],
        "reply_to": [np.nan, 7.0],
        "is_retweet": [False, True],
    }
    # numpy columns only, as in the pinned file (written before pandas 3's Arrow strings)
    frame = pd.DataFrame(
        {
            k: pd.Series(v, dtype=object) if k in ("text", "created_at") else v
            for k, v in columns.items()
        }
    )
    frame.columns = pd.Index(list(columns), dtype=object)
    back = problem_types.read_pickled_frame(lzma.compress(pickle.dumps(frame)))
    pd.testing.assert_frame_equal(back, frame)

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match=r"Refusing to load (posix|os)\.system"):
        problem_types.read_pickled_frame(lzma.compress(pickle.dumps(Payload())))
    with pytest.raises(ValueError, match="DataFrame"):
        problem_types.read_pickled_frame(lzma.compress(pickle.dumps(np.arange(3))))


def test_tweet_year_targets_are_decimal_years_of_distinct_texts():
    stamps = pd.Series(["2014-07-02T12:00:00Z", "2016-01-01T00:00:00Z", "2013-12-31T23:59:59Z"])
    years = problem_types.decimal_year(stamps)
    assert years.tolist() == pytest.approx([2014.5, 2016.0, 2014.0], abs=1e-4)
    tweets = pd.DataFrame(
        {
            "text": ["Great rally!", " ", "Great rally!", "Thanks @x"],
            "created_at": ["2016-01-01T00:00:00Z"] * 2 + ["2017-01-01T00:00:00Z"] * 2,
        }
    )
    frame = problem_types.tweet_year_frame(tweets)
    assert frame["text"].tolist() == ["Great rally!", "Thanks @x"]  # blank and repeat dropped
    assert frame["year"].tolist() == [2016.0, 2017.0]
    assert frame["year"].dtype == float


def test_validation_halves_are_the_rows_training_held_out():
    """The saved-run scripts draw the same two validation parts as training did."""
    from accelerate import PartialState
    from datasets import Dataset, DatasetDict

    from nlp_transfer.text.config import TextClassificationConfig
    from nlp_transfer.text.uncertainty import hold_out_calibration_split

    harness = bench_module("harness")
    labels = [i % 3 for i in range(90)]
    validation = Dataset.from_dict({"text": [f"t{i}" for i in range(90)], "label": labels})
    validation = validation.class_encode_column("label")
    selection, held = harness.validation_halves(validation, 0.5, seed=7)
    config = TextClassificationConfig(seed=7, calibration_split_size=0.5)
    PartialState()  # the split is logged through accelerate
    trained = hold_out_calibration_split(
        DatasetDict({"validation": validation}), config, "single_label_classification"
    )
    assert list(selection["text"]) == list(trained["validation"]["text"])
    assert list(held["text"]) == list(trained["calibration"]["text"])
    assert len(held) == 45 and sorted(list(selection["text"]) + list(held["text"])) == sorted(
        validation["text"]
    )

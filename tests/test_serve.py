"""``nlp-transfer serve`` (issue 38): dynamic batching, the endpoints, limits, SIGTERM, the page."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nlp_transfer.serving.batcher import DynamicBatcher, ShuttingDown

# --- the batcher on its own (no model) -------------------------------------------------------


def _echo_batcher(**kwargs):
    """A batcher whose "model" upper-cases texts and records each batch's jobs."""
    batches = []

    def run(jobs):
        batches.append([list(job.texts) for job in jobs])
        return [[t.upper() for t in job.texts] for job in jobs]

    return DynamicBatcher(run, **kwargs), batches


def test_concurrent_jobs_each_get_their_own_results_in_capped_batches():
    batcher, batches = _echo_batcher(max_batch_size=8, max_wait_ms=20)
    batcher.start()
    requests = [[f"r{i}-t{j}" for j in range(1 + i % 3)] for i in range(60)]
    with ThreadPoolExecutor(16) as pool:
        futures = list(pool.map(lambda texts: batcher.submit(texts), requests))
        results = [f.result(timeout=10) for f in futures]
    batcher.stop()
    assert results == [[t.upper() for t in texts] for texts in requests]
    sizes = [sum(len(j) for j in b) for b in batches]
    assert max(sizes) <= 8 and len(batches) < len(requests)  # grouped, never over the cap
    assert sorted(t for b in batches for j in b for t in j) == sorted(
        t for r in requests for t in r
    )


def test_batching_off_runs_each_request_alone_and_a_big_request_alone():
    batcher, batches = _echo_batcher(max_batch_size=4, max_wait_ms=50, enabled=False)
    for texts in (["a"], ["b", "c"]):
        batcher.submit(texts)
    batcher.start().stop()
    assert batches == [[["a"]], [["b", "c"]]]
    on, batches_on = _echo_batcher(max_batch_size=4, max_wait_ms=50)
    for texts in (["a"], ["b", "c", "d", "e", "f"], ["g"]):  # the middle one is over the cap
        on.submit(texts)
    on.start().stop()
    assert batches_on == [[["a"]], [["b", "c", "d", "e", "f"]], [["g"]]]


def test_stop_finishes_accepted_jobs_then_refuses_and_errors_reach_every_job():
    batcher, _ = _echo_batcher(max_batch_size=2, max_wait_ms=0)
    futures = [batcher.submit([f"t{i}"]) for i in range(5)]  # queued before the worker starts
    batcher.start().stop()
    assert [f.result(timeout=1) for f in futures] == [[f"T{i}"] for i in range(5)]
    with pytest.raises(ShuttingDown, match="shutting down"):
        batcher.submit(["late"])

    def broken(jobs):
        raise RuntimeError("model failed")

    failing = DynamicBatcher(broken, max_batch_size=8, max_wait_ms=100)
    futures = [failing.submit(["x"]), failing.submit(["y"])]
    failing.start().stop()
    for future in futures:
        with pytest.raises(RuntimeError, match="model failed"):
            future.result(timeout=1)
    with pytest.raises(ValueError, match="--max_batch_size"):
        DynamicBatcher(broken, max_batch_size=0)


# --- the server on a trained model -----------------------------------------------------------

pytest.importorskip("fastapi")
TEXTS = ["a great film", "a dull plot", "fine acting and a good story", "bad", "great great"]


@pytest.fixture(scope="module")
def model_dir(tiny_bert_dir, tmp_path_factory):
    """A tiny sentiment model trained for real: calibrated, with conformal scores."""
    from conftest import train_toy_sentiment

    return train_toy_sentiment(tiny_bert_dir, tmp_path_factory.mktemp("serve"))


def _client(model_dir, **settings):
    from fastapi.testclient import TestClient

    from nlp_transfer.serving import ServeSettings, create_app

    return TestClient(create_app(ServeSettings(model_dir=str(model_dir), **settings)))


def _same(got: list[dict], expected: list[dict]) -> None:
    """Same labels and sets; probabilities equal to 1e-5 (batches pad differently)."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g["label"] == e["label"] and g.get("prediction_set") == e.get("prediction_set")
        assert g["scores"] == pytest.approx(e["scores"], abs=1e-5)


@pytest.mark.parametrize("backend", ["torch", "int8"])
def test_predictions_through_the_server_equal_the_classifiers(model_dir, backend):
    from nlp_transfer import TextClassifier

    kwargs = {} if backend == "torch" else {"backend": "onnxruntime", "quantize": "int8"}
    if backend == "int8":
        pytest.importorskip("onnxruntime")
    classifier = TextClassifier.from_pretrained(model_dir, device="cpu", **kwargs)
    with _client(model_dir, device="cpu", **kwargs) as client:
        response = client.post("/predict", json={"texts": TEXTS, "coverage": 0.9})
        assert response.status_code == 200, response.text
        _same(response.json()["predictions"], classifier.predict(TEXTS, coverage=0.9))
        metadata = client.get("/metadata").json()
    assert metadata["labels"] == classifier.labels
    assert metadata["problem_type"] == "single_label_classification"
    assert metadata["prediction_sets"]["method"] == "aps_randomized"
    assert metadata["calibration"]["temperature"] > 0
    assert metadata["long_text"]["strategy"] in ("truncate", "head_tail")  # as training chose
    assert metadata["backend"] == ("torch" if backend == "torch" else "onnxruntime (int8)")


def test_bad_requests_get_a_422_naming_the_field_and_limits_hold(model_dir):
    with _client(
        model_dir, device="cpu", max_texts_per_request=3, max_text_chars=50, max_body_bytes=2_000
    ) as client:

        def error(body):
            response = client.post("/predict", json=body)
            assert response.status_code == 422, response.text
            detail = response.json()["detail"]
            return detail[0]["loc"][-1], detail[0]["msg"]

        assert error({"texts": []})[0] == "texts"
        assert error({"texts": "one text"})[0] == "texts"  # a string, not a list
        assert error({"texts": ["ok"], "lables": 1})[0] == "lables"  # unknown field
        assert error({"texts": ["ok"], "coverage": 1.5})[0] == "coverage"
        assert error({"texts": ["a", "b", "c", "d"]}) == (
            "texts",
            "4 texts in one request; the server takes at most 3 (--max_texts_per_request): "
            "split the request.",
        )
        field, message = error({"texts": ["ok", "x" * 51]})
        assert field == "texts" and "texts[1] has 51 characters" in message
        field, message = error({"texts": ["ok"], "text_pairs": ["other"]})
        assert field == "text_pairs" and "single texts" in message
        too_big = client.post("/predict", content=json.dumps({"texts": ["word " * 500]}))
        assert too_big.status_code == 413 and "--max_body_bytes" in too_big.json()["detail"]
        assert client.get("/health").json()["status"] == "ok"
        schema = client.get("/openapi.json").json()
        assert "/predict" in schema["paths"] and "/metadata" in schema["paths"]
        metrics = client.get("/metrics").text
    assert 'nlp_transfer_requests_total{path="/predict",status="422"} 7.0' in metrics
    assert 'nlp_transfer_requests_total{path="/health",status="200"} 1.0' in metrics
    assert 'nlp_transfer_requests_total{path="other",status="413"} 1.0' in metrics  # BodyLimit's
    assert "nlp_transfer_queue_depth 0.0" in metrics


def test_a_model_without_conformal_scores_refuses_coverage_by_name(model_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    (old / "conformal.json").unlink()
    with _client(old, device="cpu") as client:
        response = client.post("/predict", json={"texts": ["ok"], "coverage": 0.9})
        assert client.post("/predict", json={"texts": ["ok"]}).status_code == 200
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "coverage"]
    assert "conformal.json" in response.json()["detail"][0]["msg"]


class _ThreadedServer:
    """uvicorn on a free port in a thread (no signal handlers: not the main thread)."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)


def test_concurrent_requests_through_http_get_their_own_texts_results(model_dir):
    import httpx

    from nlp_transfer import TextClassifier
    from nlp_transfer.serving import ServeSettings, create_app

    expected = TextClassifier.from_pretrained(model_dir, device="cpu")
    requests = [[f"{TEXTS[i % 5]} {'good ' * (i % 7)}".strip()] * (1 + i % 3) for i in range(48)]
    app = create_app(ServeSettings(str(model_dir), device="cpu", max_batch_size=16, max_wait_ms=30))
    with _ThreadedServer(app) as url:

        def post(texts):
            return httpx.post(f"{url}/predict", json={"texts": texts}, timeout=60)

        with ThreadPoolExecutor(24) as pool:
            responses = list(pool.map(post, requests))
        metrics = httpx.get(f"{url}/metrics").text
    for texts, response in zip(requests, responses, strict=True):
        assert response.status_code == 200
        _same(response.json()["predictions"], expected.predict(texts))
    batches = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("nlp_transfer_batch_size_count")
    )
    assert batches < len(requests)  # concurrent requests shared forward passes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sigterm_finishes_the_accepted_requests(model_dir):
    """The CLI in its own process: requests in flight when SIGTERM arrives all get answers."""
    import httpx

    port = _free_port()
    command = [sys.executable, "-m", "nlp_transfer", "serve", "--model_dir", str(model_dir)]
    # a long batching window keeps every request waiting in the queue until SIGTERM
    command += ["--port", str(port), "--max_wait_ms", "20000", "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        with ThreadPoolExecutor(8) as pool:
            futures = [
                pool.submit(httpx.post, f"{url}/predict", json={"texts": [t]}, timeout=60)
                for t in TEXTS + TEXTS[:3]
            ]
            # SIGTERM only once the server holds all 8 (a loaded machine may take seconds to
            # connect them; a request not yet accepted is refused, as it should be)
            while httpx.get(f"{url}/health", timeout=5).json()["queue_depth"] < len(futures):
                assert time.monotonic() < deadline + 60, "the requests were never all accepted"
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            responses = [f.result() for f in futures]
        # uvicorn re-raises the signal once it has shut down, so the status says SIGTERM
        assert process.wait(60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
    assert [r.status_code for r in responses] == [200] * 8
    assert all(len(r.json()["predictions"]) == 1 for r in responses)
    assert "stopped after answering 8 of 8 accepted /predict requests" in process.stdout.read()


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.mark.slow
def test_the_page_classifies_a_typed_text_in_a_real_browser(model_dir, tmp_path):
    """Headless Chromium types a text into the page at / and reads the rendered bars."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    browser_path = _browser()
    if browser_path is None:
        pytest.skip("no Chromium on this machine: apt-get install chromium (.ci/run does)")
    from nlp_transfer import TextClassifier
    from nlp_transfer.serving import ServeSettings, create_app

    expected = TextClassifier.from_pretrained(model_dir, device="cpu").predict(["a great film"])
    app = create_app(ServeSettings(str(model_dir), device="cpu"))
    with _ThreadedServer(app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.goto(url)
        page.wait_for_function("document.getElementById('title').textContent === 'model'")
        page.fill("#texts", "a great film")
        page.click("#go")
        page.wait_for_selector(".result .row")
        verdict = page.inner_text(".result .verdict")
        bars = page.eval_on_selector_all(
            ".result .row",
            "rows => rows.map(r => [r.dataset.label, r.querySelector('.pct').textContent])",
        )
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        if shot := os.environ.get("NLP_TRANSFER_SCREENSHOT"):  # to look at it by hand
            Path(shot).write_bytes((tmp_path / "page.png").read_bytes())
        browser.close()
    top = expected[0]
    assert verdict.startswith(f"{top['label']} ({100 * top['score']:.1f}%)")
    assert dict(bars) == {k: f"{100 * v:.1f}%" for k, v in top["scores"].items()}
    assert (tmp_path / "page.png").stat().st_size > 5_000


def test_settings_name_the_flag_at_fault_and_the_card_summary_skips_headings(tmp_path):
    from nlp_transfer.serving import ServeSettings
    from nlp_transfer.serving.model_server import model_card_summary

    with pytest.raises(FileNotFoundError, match="--model_dir"):
        ServeSettings(str(tmp_path)).check()
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="--quantize int8 needs --backend onnxruntime"):
        ServeSettings(str(tmp_path), quantize="int8").check()
    with pytest.raises(ValueError, match="--max_texts_per_request"):
        ServeSettings(str(tmp_path), max_texts_per_request=0).check()
    assert model_card_summary(tmp_path) is None
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# Title\n\n| a |\n\nThe model.\n")
    assert model_card_summary(tmp_path) == "The model."


def test_model_threads_leave_a_core_to_the_http_loop_for_onnxruntime():
    from nlp_transfer.serving.settings import model_threads

    assert model_threads("onnxruntime", cpu_count=2) == 1
    assert model_threads("onnxruntime", cpu_count=16) == 15
    assert model_threads("onnxruntime", workers=4, cpu_count=16) == 3
    assert model_threads("onnxruntime", workers=4, cpu_count=2) == 1
    assert model_threads("torch", cpu_count=16) is None  # torch's default
    assert model_threads("torch", workers=4, cpu_count=16) == 4


def test_an_onnxruntime_server_runs_the_threads_it_chose_without_spinning(model_dir):
    pytest.importorskip("onnxruntime")
    from nlp_transfer.serving.settings import model_threads

    kwargs = {"device": "cpu", "backend": "onnxruntime", "quantize": "int8"}
    with _client(model_dir, **kwargs) as client:
        server = client.app.state.server
        assert client.get("/metadata").json()["num_threads"] == model_threads("onnxruntime")
    options = server.classifier.model.session.get_session_options()
    assert options.intra_op_num_threads == model_threads("onnxruntime")
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with _client(model_dir, num_threads=3, **kwargs) as client:
        options = client.app.state.server.classifier.model.session.get_session_options()
        assert options.intra_op_num_threads == 3
    with pytest.raises(ValueError, match="--num_threads must be at least 1"):
        _client(model_dir, num_threads=0, **kwargs)


def test_batching_is_on_by_default_except_for_int8_and_the_flags_win(tmp_path):
    from nlp_transfer.serving import ServeSettings

    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    int8 = {"backend": "onnxruntime", "quantize": "int8"}
    assert ServeSettings(str(tmp_path)).check().dynamic_batching is True
    assert ServeSettings(str(tmp_path), backend="onnxruntime").check().dynamic_batching is True
    assert ServeSettings(str(tmp_path), **int8).check().dynamic_batching is False
    assert ServeSettings(str(tmp_path), dynamic_batching=True, **int8).check().dynamic_batching
    assert not ServeSettings(str(tmp_path), dynamic_batching=False).check().dynamic_batching

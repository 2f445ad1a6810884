"""The HTTP server: predictions per task, every limit and error (the server keeps serving after
each), the API key, metrics, dynamic batching, and fuzzing against its own OpenAPI schema."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient  # the serve extra: installed by `make test`, so no skip

import lmtune
from lmtune.pipeline import finetune
from lmtune.serving import Limits, create_app
from conftest import QA_CONTEXT, tiny_config

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def runs(tiny_model, toy_data, ner_data, qa_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("served")
    folders = {}
    for task, data, method in (("classification", toy_data, "full"), ("ner", ner_data, "lora"),
                               ("qa", qa_data, "full")):
        cfg = tiny_config(tiny_model, data, out, epochs=2)
        cfg.task, cfg.method.name, cfg.train.run_name = task, method, task
        folders[task] = finetune(cfg, quiet=True).root
    return folders


@pytest.fixture(scope="module")
def predictors(runs):
    return {name: lmtune.load(folder) for name, folder in runs.items()}


@pytest.fixture
def client(predictors):
    app = create_app(predictors, limits=Limits(max_body_bytes=4000, max_inputs=4, max_chars=200))
    with TestClient(app) as test_client:
        yield test_client


def predict(client, model, body, **kwargs):
    return client.post(f"/v1/models/{model}/predict", json=body, **kwargs)


def test_each_task_answers_like_the_python_api(client, predictors):
    texts = ["the film was good", "bad plot"]
    response = predict(client, "classification", {"inputs": texts})
    assert response.status_code == 200
    assert response.json()["predictions"] == predictors["classification"].predict(texts)
    ner = predict(client, "ner", {"inputs": ["alice visited paris", ["bob", "met", "carol"]]}).json()
    assert ner["task"] == "ner" and all("entities" in p for p in ner["predictions"])
    qa = predict(client, "qa", {"inputs": [{"question": "who visited rome ?", "context": QA_CONTEXT}],
                                "options": {"top_k": 2}}).json()
    assert len(qa["predictions"][0]) == 2
    answer = qa["predictions"][0][0]
    assert QA_CONTEXT[answer["start"]:answer["end"]] == answer["answer"]
    assert {m["name"] for m in client.get("/v1/models").json()} == {"classification", "ner", "qa"}
    assert client.get("/health").json() == {"status": "ok"} and client.get("/ready").status_code == 200


@pytest.mark.parametrize("body, status, message", [
    ({"inputs": []}, 422, "at least 1"),
    ({"inputs": ["a"] * 5}, 422, "at most 4 per request"),
    ({"inputs": ["x" * 201]}, 422, "at most 200 per text"),
    ({"inputs": "just a string"}, 422, "list"),
    ({"inputs": [3]}, 422, "Input should be a valid string"),
    ({"inputs": ["good"], "pairs": ["a", "b"]}, 422, "1 inputs but 2 pairs"),
    ({"inputs": [{"question": "q", "context": "c"}]}, 422, "classification model takes a text"),
    ({"inputs": ["good"], "options": {"top_k": 0}}, 422, "greater than or equal to 1"),
    ({"inputs": ["good"], "extra": 1}, 422, "Extra inputs are not permitted"),
])
def test_bad_requests_get_a_message_and_the_server_keeps_serving(client, body, status, message):
    response = predict(client, "classification", body)
    assert response.status_code == status
    assert message in response.text
    assert predict(client, "classification", {"inputs": ["good"]}).status_code == 200


def test_oversized_body_unknown_model_and_broken_json(client):
    big = predict(client, "classification", {"inputs": ["good " * 1000]})
    assert big.status_code == 413 and "4000 bytes" in big.json()["detail"]
    streamed = client.post("/v1/models/classification/predict", content=iter([b'{"inputs": ["' + b"a" * 5000, b'"]}']))
    assert streamed.status_code == 413
    missing = predict(client, "nope", {"inputs": ["good"]})
    assert missing.status_code == 404 and "classification" in missing.json()["detail"]
    broken = client.post("/v1/models/classification/predict", content=b"{not json",
                         headers={"content-type": "application/json"})
    assert broken.status_code == 422
    assert predict(client, "classification", {"inputs": ["good"]}).status_code == 200


def test_api_key(predictors):
    app = create_app({"classification": predictors["classification"]}, api_key=KEY)
    with TestClient(app) as client:
        assert predict(client, "classification", {"inputs": ["good"]}).status_code == 401
        wrong = predict(client, "classification", {"inputs": ["good"]}, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and "API key" in wrong.json()["detail"]
        assert predict(client, "classification", {"inputs": ["good"]}, headers={"X-API-Key": KEY}).status_code == 200
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert predict(client, "classification", {"inputs": ["good"]}, headers=bearer).status_code == 200
        assert client.get("/metrics").status_code == 401
        assert client.get("/health").status_code == 200  # probes need no key


def test_metrics_count_requests_and_batches(client):
    for _ in range(3):
        predict(client, "classification", {"inputs": ["good", "bad"]})
    predict(client, "classification", {"inputs": []})
    text = client.get("/metrics").text
    assert 'lmtune_requests_total{model="classification",status="200"} 3.0' in text
    assert 'lmtune_batch_size_count{model="classification"} 3.0' in text
    assert 'lmtune_request_seconds_bucket{le="+Inf",model="classification"} 3.0' in text


def test_requests_arriving_together_share_a_batch():
    from lmtune.serving.batching import Batcher

    calls = []

    def fake_predict(items, options):
        calls.append(len(items))
        return [f"{item}!" for item in items]

    async def scenario(enabled):
        batcher = Batcher(fake_predict, max_batch=8, max_wait_ms=50, enabled=enabled)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([f"r{i}a", f"r{i}b"], {}) for i in range(4)))
        await batcher.stop()
        return results

    together = asyncio.run(scenario(True))
    assert together == [[f"r{i}a!", f"r{i}b!"] for i in range(4)] and calls == [8]
    calls.clear()
    assert asyncio.run(scenario(False)) == together and calls == [2, 2, 2, 2]


def test_a_bad_request_fails_alone_not_the_batch_it_arrives_with(predictors):
    """Requests that arrive together share a batch; one the model cannot take (text pairs for a
    single-text classifier, a word list) is refused on its own, before it joins the batch."""
    from concurrent.futures import ThreadPoolExecutor

    app = create_app({"classification": predictors["classification"]}, max_batch=64, max_wait_ms=300)
    good = {"inputs": ["the film was good", "bad plot"]}
    bad = [({"inputs": ["good"], "pairs": ["a second text"]}, "trained on single texts"),
           ({"inputs": [["good", "film"]]}, "classification model takes a text")]
    bodies = [(good, None), *bad] * 4
    with TestClient(app) as client:
        expected = predict(client, "classification", good).json()["predictions"]
        inputs_before, batches_before = _batch_stats(client)
        with ThreadPoolExecutor(len(bodies)) as pool:
            responses = list(pool.map(lambda body: predict(client, "classification", body[0]), bodies))
        for (body, message), response in zip(bodies, responses):
            if message is None:
                assert response.status_code == 200 and response.json()["predictions"] == expected
            else:
                assert response.status_code == 422 and message in response.json()["detail"]
        # Only the good requests' inputs reached the model, and they did share forward passes.
        inputs, batches = _batch_stats(client)
        assert inputs - inputs_before == 4 * len(good["inputs"])
        assert batches - batches_before < 4


def _batch_stats(client) -> tuple[float, float]:
    """Inputs the model has run on so far, and in how many forward passes (batch-size histogram)."""
    text = client.get("/metrics").text
    return tuple(float(text.split(f'lmtune_batch_size_{kind}{{model="classification"}} ')[1].split()[0])
                 for kind in ("sum", "count"))


def test_an_error_inside_a_batch_reaches_only_its_request():
    """Should a request still fail inside a shared batch, each request is run alone: the others
    get their results, the one at fault its own error."""
    from lmtune.serving.batching import Batcher

    calls = []

    def fake_predict(items, options):
        calls.append(list(items))
        if "boom" in items:
            raise ValueError("boom is not an input this model takes")
        return [f"{item}!" for item in items]

    async def scenario():
        batcher = Batcher(fake_predict, max_batch=8, max_wait_ms=50)
        batcher.start()
        results = await asyncio.gather(batcher.submit(["a"], {}), batcher.submit(["boom"], {}),
                                       batcher.submit(["b", "c"], {}), return_exceptions=True)
        await batcher.stop()
        return results

    ok_a, failed, ok_bc = asyncio.run(scenario())
    assert ok_a == ["a!"] and ok_bc == ["b!", "c!"]
    assert isinstance(failed, ValueError) and "boom is not an input" in str(failed)
    assert calls == [["a", "boom", "b", "c"], ["a"], ["boom"], ["b", "c"]]


@pytest.fixture
def live_server(predictors):
    """The app under uvicorn on a free local port, in a thread; stopped after the test."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(predictors, limits=Limits(max_inputs=4, max_chars=200))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_fuzzing_the_openapi_schema_finds_no_server_error(live_server):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json")
    failures, calls = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            nonlocal calls
            calls += 1
            response = case.call()
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, case.body, response.text[:200]))

        check()
    assert calls > 50 and not failures, failures[:3]

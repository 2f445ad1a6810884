"""Task routing for adapter-per-task: the centroid router on known vectors, its file, and the
sentence embeddings it routes on (a tiny BERT)."""

from __future__ import annotations

import numpy as np
import pytest

from lmtune.experiments.continual.routing import CentroidRouter, Embedder, embed_texts


def clusters(seed: int, per_step: int = 20) -> dict[str, np.ndarray]:
    """Three tight clusters around orthogonal directions in 16 dimensions, at different scales
    (routing is by angle, so scale must not matter)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, (step, scale) in enumerate((("news", 1.0), ("reviews", 5.0), ("science", 0.2))):
        centre = np.zeros(16)
        centre[k] = 1.0
        out[step] = (scale * (centre + 0.1 * rng.standard_normal((per_step, 16)))).astype(np.float32)
    return out


def test_clustered_vectors_route_to_their_own_step():
    router = CentroidRouter().fit(clusters(seed=0))
    assert router.steps == ["news", "reviews", "science"]
    assert np.allclose(np.linalg.norm(router.centroids, axis=1), 1.0)
    test = clusters(seed=1, per_step=10)
    assert router.route(test["science"]) == ["science"] * 10
    report = router.accuracy(test)
    assert report["accuracy"] == 1.0 and report["correct"] == 30 and report["total"] == 30
    assert report["per_step"]["reviews"] == {"accuracy": 1.0, "correct": 10, "total": 10,
                                             "routed_to": {"reviews": 10}}


def test_overlapping_steps_report_who_went_where():
    router = CentroidRouter().fit({"a": np.array([[1.0, 0.0]]), "b": np.array([[0.0, 1.0]])})
    # a's third input lies nearer b's direction.
    report = router.accuracy({"a": np.array([[1.0, 0.1], [1.0, 0.2], [0.1, 1.0]]),
                              "b": np.array([[0.0, 1.0], [0.2, 1.0]])})
    assert report["accuracy"] == pytest.approx(4 / 5)
    assert (report["correct"], report["total"]) == (4, 5)
    assert report["per_step"]["a"] == {"accuracy": pytest.approx(2 / 3), "correct": 2, "total": 3,
                                       "routed_to": {"a": 2, "b": 1}}
    assert report["per_step"]["b"]["accuracy"] == 1.0


def test_router_errors_say_what_to_do():
    with pytest.raises(ValueError, match="not fitted"):
        CentroidRouter().route(np.ones((1, 2)))
    router = CentroidRouter().fit({"a": np.eye(2)[:1], "b": np.eye(2)[1:]})
    with pytest.raises(ValueError, match=r"expected \[n, 2\]"):
        router.route(np.ones((1, 3)))
    with pytest.raises(ValueError, match="step 'c' is not one the router was fitted on"):
        router.accuracy({"c": np.ones((1, 2))})
    with pytest.raises(ValueError, match="step 'b' has embeddings of shape"):
        CentroidRouter().fit({"a": np.ones((1, 2)), "b": np.ones((0, 2))})
    with pytest.raises(ValueError, match="differ in width"):
        CentroidRouter().fit({"a": np.ones((1, 2)), "b": np.ones((1, 3))})


def test_save_and_load_keep_centroids_and_step_order(tmp_path):
    data = clusters(seed=0)
    data = {"zeta": data["science"], "alpha": data["news"], "mid": data["reviews"]}  # not sorted
    router = CentroidRouter().fit(data)
    path = router.save(tmp_path / "routing" / "router.npz")
    assert path == tmp_path / "routing" / "router.npz" and path.is_file()
    loaded = CentroidRouter.load(path)
    assert loaded.steps == ["zeta", "alpha", "mid"]
    np.testing.assert_array_equal(loaded.centroids, router.centroids)
    test = clusters(seed=2, per_step=5)
    assert loaded.route(test["news"]) == ["alpha"] * 5
    np.savez(tmp_path / "other.npz", weights=np.ones(2))
    with pytest.raises(ValueError, match="not a saved CentroidRouter"):
        CentroidRouter.load(tmp_path / "other.npz")


TEXTS = ["good", "the film was really quite good and it so", "bad", "the plot was dull",
         "alice met bob in paris today", "great acting"]


def test_embed_texts_unit_rows_in_input_order(tiny_model):
    vectors = embed_texts(tiny_model, TEXTS)
    assert vectors.shape == (len(TEXTS), 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[2], atol=1e-3)  # different texts, different vectors
    # Each text alone (no padding) gives the vector it got padded among longer neighbours.
    embedder = Embedder(tiny_model, batch_size=1)
    alone = np.concatenate([embedder([text]) for text in TEXTS])
    np.testing.assert_allclose(vectors, alone, atol=1e-5)
    # Other batch sizes regroup the texts; the rows stay in input order.
    np.testing.assert_allclose(Embedder(tiny_model, batch_size=4)(TEXTS[::-1]), vectors[::-1], atol=1e-5)
    assert embedder([]).shape == (0, 32)


def test_max_length_truncates_and_a_loaded_pair_is_reused(tiny_model):
    from transformers import AutoModel

    from lmtune.models import load_tokenizer

    embedder = Embedder.from_model(AutoModel.from_pretrained(str(tiny_model)), load_tokenizer(tiny_model),
                                   max_length=4)
    # [CLS] the film [SEP]: the rest is cut.
    np.testing.assert_allclose(embedder(["the film was good"]), embedder(["the film"]), atol=1e-5)
    full = embed_texts(tiny_model, ["the film was good"])
    assert not np.allclose(embedder(["the film was good"]), full, atol=1e-3)
    with pytest.raises(ValueError, match="batch_size"):
        Embedder(tiny_model, batch_size=0)

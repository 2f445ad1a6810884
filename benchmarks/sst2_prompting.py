"""SST-2 dev accuracy without training (zero-shot and 8-shot prompting) next to fine-tuning.

Rows: SmolLM2-135M-Instruct scoring the label words (decoder), MiniLM embedding similarity to
label descriptions (encoder), each zero-shot and with 8 examples from train.tsv, and the
fine-tuned MiniLM run of benchmarks/sst2_accuracy.py (runs/bench-sst2) on the same rows.

    .venv/bin/python benchmarks/sst2_prompting.py [--rows 1000] [--shots 8]
"""

from __future__ import annotations

import argparse
import time

from preset_run import ROOT, SHARED_DATA

LABELS = "0=negative,1=positive"


def main() -> None:
    import lmtune
    from lmtune.data import read_table
    from lmtune.inference.predictor import load_prompted
    from lmtune.prompting import LabelSet, draw_shots

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000, help="first N dev rows (0: all 6,735)")
    parser.add_argument("--shots", type=int, default=8)
    args = parser.parse_args()
    dev = read_table(SHARED_DATA / "sst2" / "dev.tsv").records
    dev = dev[: args.rows] if args.rows else dev
    texts, gold = [r.fields["sentence"] for r in dev], [str(r.fields["label"]) for r in dev]
    labels = LabelSet.parse(LABELS)
    train = read_table(SHARED_DATA / "sst2" / "train.tsv").records
    shots = draw_shots(train, lambda r: r.fields["sentence"], lambda r: str(r.fields["label"]), labels, args.shots)

    table = []
    for model, how, options in (("smollm2", "decoder label scoring", {}),
                                ("minilm", "encoder similarity", {"description": "a {label} review"})):
        for k in (0, args.shots):
            start = time.time()
            predictor = load_prompted(model, labels, shots[:k], text_column="sentence", **options)
            metrics = predictor.evaluate_records(dev)
            table.append((f"{model}, {how}", f"{k}-shot" if k else "zero-shot", metrics, time.time() - start))
            print(f"{table[-1][0]} {table[-1][1]}: accuracy {metrics['accuracy']:.4f} "
                  f"({table[-1][3]:.0f}s)", flush=True)
    tuned = ROOT / "runs" / "bench-sst2"
    if (tuned / "model").is_dir():
        predictor = lmtune.load(tuned)
        start = time.time()
        predicted = [p["label"] for p in predictor.predict(texts)]
        from lmtune.evaluation.metrics import single_label_metrics
        import numpy as np

        index = {v: i for i, v in enumerate(predictor.labels)}
        metrics = single_label_metrics(np.array([index[g] for g in gold]), np.array([index[p] for p in predicted]),
                                       predictor.labels)
        table.append(("minilm, fine-tuned (benchmarks/sst2_accuracy.py)", "60,614 rows", metrics, time.time() - start))
    else:
        print(f"(no {tuned}: run benchmarks/sst2_accuracy.py for the fine-tuned row)")

    print(f"\nSST-2 dev, first {len(dev)} rows; labels {LABELS}; shots drawn from train.tsv (balanced, seed 0)")
    print("| model, method | examples | accuracy | macro F1 | seconds |\n|---|---|---|---|---|")
    for name, shots_used, metrics, seconds in table:
        print(f"| {name} | {shots_used} | {metrics['accuracy']:.4f} | {metrics['macro_f1']:.4f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()

"""Single-process inference throughput on the SST-2 dev sentences (6,735), one run, four ways:
transformers `pipeline` (batch 32), the lmtune PyTorch predictor, lmtune ONNX, lmtune ONNX int8.

Uses the fine-tuned run of benchmarks/sst2_accuracy.py (runs/bench-sst2; exported to ONNX here
if it has no onnx/ yet). Prints sentences/s, accuracy, and agreement with the PyTorch model.

    .venv/bin/python benchmarks/inference_speed.py [--run runs/bench-sst2] [--rows 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from preset_run import ROOT, SHARED_DATA


def main() -> None:
    import torch

    import lmtune
    from lmtune.data import read_table
    from lmtune.export import export_onnx

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default=str(ROOT / "runs" / "bench-sst2"))
    parser.add_argument("--rows", type=int, default=0, help="first N dev rows (0: all)")
    args = parser.parse_args()
    dev = read_table(SHARED_DATA / "sst2" / "dev.tsv").records
    dev = dev[: args.rows] if args.rows else dev
    texts, gold = [r.fields["sentence"] for r in dev], [str(r.fields["label"]) for r in dev]
    run = Path(args.run)
    if not (run / "onnx" / "model.int8.onnx").is_file():
        export_onnx(run, quantize="int8", data=SHARED_DATA / "sst2" / "dev.tsv", sample=512)

    from transformers import pipeline

    results = {}

    def timed(name, predict_labels):
        predict_labels(texts[:64])  # warm-up
        start = time.perf_counter()
        labels = predict_labels(texts)
        seconds = time.perf_counter() - start
        results[name] = (len(texts) / seconds, np.mean([a == b for a, b in zip(labels, gold)]), labels)
        print(f"{name}: {results[name][0]:.1f} sentences/s, accuracy {results[name][1]:.4f}", flush=True)

    classifier = pipeline("text-classification", model=str(run / "model"), device=-1)
    timed("transformers pipeline (batch 32)",
          lambda t: [r["label"] for r in classifier(list(t), batch_size=32, truncation=True, max_length=128)])
    for name, kwargs in (("lmtune PyTorch", {}), ("lmtune ONNX", {"backend": "onnx"}),
                         ("lmtune ONNX int8", {"backend": "onnx", "quantized": True})):
        predictor = lmtune.load(run, **kwargs)
        timed(name, lambda t, p=predictor: [x["label"] for x in p.predict(list(t))])

    reference = results["lmtune PyTorch"][2]
    base = results["transformers pipeline (batch 32)"][0]
    print(f"\nSST-2 dev, {len(texts)} sentences, {torch.get_num_threads()} threads, one process:")
    print("| backend | sentences/s | vs pipeline | accuracy | agreement with PyTorch |\n|---|---|---|---|---|")
    for name, (speed, accuracy, labels) in results.items():
        agreement = np.mean([a == b for a, b in zip(labels, reference)])
        print(f"| {name} | {speed:.1f} | {speed / base:.2f}x | {accuracy:.4f} | {100 * agreement:.2f}% |")


if __name__ == "__main__":
    main()

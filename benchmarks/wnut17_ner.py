"""WNUT-17 NER with the default model (examples/wnut17.yaml): train on train, select on dev,
report entity-level micro F1 on test (seqeval, strict IOB2), next to the DistilBERT reference.

    .venv/bin/python benchmarks/wnut17_ner.py [--train.epochs 10 ...]
"""

import sys

from preset_run import run_preset

SPLITS = {"train": "wnut17/train.conll", "validation": "wnut17/dev.conll", "test": "wnut17/test.conll"}

if __name__ == "__main__":
    metrics, seconds = run_preset("wnut17.yaml", SPLITS, "bench-wnut17", sys.argv[1:])
    test, dev = metrics["test"], metrics["validation"]
    print(f"\nWNUT-17 entity micro F1: test {test['f1']:.4f} (P {test['precision']:.4f} "
          f"R {test['recall']:.4f}), dev {dev['f1']:.4f} at step {metrics['training']['best_step']}; "
          f"reference DistilBERT-uncased 0.36-0.43; {seconds:.0f}s; "
          f"{metrics['data']['test'].get('windowed', 0)} test inputs windowed")

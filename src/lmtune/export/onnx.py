"""ONNX export of encoder runs (classification, NER, QA) for fast CPU inference, with optional
int8 dynamic quantization (onnxruntime) and a parity report against the PyTorch model.

<run>/onnx/ holds model.onnx (and model.int8.onnx), the tokenizer, the model config (labels)
and parity.json. `lmtune.load(run, backend="onnx")` predicts with it through the same
encoding and decoding as the PyTorch predictor.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ConfigError
from ..run import RunFolder

def plain_model(run: RunFolder, cfg: Any, task: Any) -> Any:
    """The run's model as a plain module: adapters merged into a private copy, any other
    method's model as that method loads it."""
    from ..methods import get_method
    from ..methods.adapters import AdapterMethod, merged_model

    method = get_method(cfg)
    if isinstance(method, AdapterMethod):
        return merged_model(run.root, method, task.auto_model_class)
    return method.load(run.model, task.auto_model_class)


class _Outputs(torch.nn.Module):
    """The model with positional inputs and a tuple of named outputs, as the exporter wants."""

    def __init__(self, model: Any, inputs: list[str], outputs: list[str]):
        super().__init__()
        self.model, self.inputs, self.outputs = model, inputs, outputs

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.model(**dict(zip(self.inputs, args)))
        return tuple(getattr(result, name) for name in self.outputs)


def export_onnx(run_dir: str | Path, quantize: str | None = None, data: str | Path | None = None,
                sample: int = 512, quiet: bool = False) -> dict[str, Any]:
    """Write <run>/onnx/ and return the parity report (also saved as parity.json)."""
    from ..models import load_tokenizer, quiet_transformers
    from ..tasks import get_task

    quiet_transformers()
    run = RunFolder(Path(run_dir))
    cfg = run.load_config()
    task = get_task(cfg)
    if not task.onnx_outputs:
        raise ConfigError(f"ONNX export covers encoder runs (classification, NER, QA); a {task.name} "
                          "run is served with PyTorch (lmtune serve)")
    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize {quantize!r}: only int8 is supported")
    model = plain_model(run, cfg, task).eval()
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")  # one traceable attention path
    tokenizer = load_tokenizer(run.model)
    out = run.root / "onnx"
    out.mkdir(exist_ok=True)
    example = tokenizer(["a short example", "a somewhat longer example sentence"], padding=True, return_tensors="pt")
    inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in example]
    outputs = list(task.onnx_outputs)
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs + outputs}
    # The tracer warns about Python-level branches in transformers' mask code; the parity
    # report below checks the exported graph across batch sizes and lengths instead.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Outputs(model, inputs, outputs), tuple(example[n] for n in inputs),
                          str(out / "model.onnx"), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=17, dynamo=False, do_constant_folding=True)
    model.config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    files = {"fp32": out / "model.onnx"}
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Weights of the matrix products only, one scale per output channel; embedding tables
        # stay fp32. On SST-2 dev: 99.55% agreement with PyTorch, against 98.99% for
        # onnxruntime's default (every op, one scale per tensor), at the same speed.
        # reduce_range: 7-bit weights, so the u8 x s8 products cannot saturate on x86 CPUs
        # without VNNI, where the model may be served even if it was exported elsewhere (on
        # such a CPU the tiny NER test model's logits moved 0.32 without it, 0.012 with it).
        quantize_dynamic(str(out / "model.onnx"), str(out / "model.int8.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True, reduce_range=True, op_types_to_quantize=["MatMul"])
        files["int8"] = out / "model.int8.onnx"
    report = parity(run.root, data, sample, list(files))
    report["files"] = {k: {"path": str(v), "mb": round(v.stat().st_size / 1e6, 2)} for k, v in files.items()}
    (out / "parity.json").write_text(json.dumps(report, indent=1))
    if not quiet:
        print(format_parity(report))
    return report


def parity(run_dir: Path, data: str | Path | None, sample: int, variants: list[str]) -> dict[str, Any]:
    """Max logit difference, prediction agreement and (labeled data) the task metric, per variant."""
    from ..data import read_table
    from ..inference.predictor import load

    torch_predictor = load(run_dir, calibrated=False)  # logits compared as the graph gives them
    source = data or torch_predictor.cfg.data.validation or torch_predictor.cfg.data.test
    if not source or not Path(source).is_file():
        raise ConfigError("the parity report needs sample inputs: pass --data FILE (labeled gives accuracy)")
    dataset = read_table(source)
    records = dataset.records[:sample]
    task = torch_predictor.task
    issues = task.check({"test": dataset})
    labeled = not any(i.level == "error" for i in issues)
    reference, encoded = torch_predictor.logits(records, with_labels=labeled)
    reference_pred = task.decode(reference, encoded)
    report: dict[str, Any] = {"data": str(source), "examples": len(records), "variants": {}}
    metric = task.default_metric
    if labeled:
        report["pytorch"] = {metric: task.metrics(reference, encoded)[metric]}
    for variant in variants:
        predictor = load(run_dir, backend="onnx", quantized=variant == "int8", calibrated=False)
        logits, _ = predictor.logits(records, with_labels=labeled)
        predicted = task.decode(logits, encoded)
        row = {"max_abs_logit_diff": float(max(np.abs(a - b).max() for a, b in zip(logits, reference))),
               "agreement": float(np.mean([task.same_prediction(a, b) for a, b in zip(predicted, reference_pred)]))}
        if labeled:
            row[metric] = task.metrics(logits, encoded)[metric]
        report["variants"][variant] = row
    return report


def format_parity(report: dict[str, Any]) -> str:
    lines = [f"parity on {report['examples']} examples of {report['data']}:"]
    if "pytorch" in report:
        lines.append(f"  pytorch  {json.dumps(report['pytorch'])}")
    for name, row in report["variants"].items():
        extra = "".join(f"  {k} {v:.4f}" for k, v in row.items() if k not in ("max_abs_logit_diff", "agreement"))
        lines.append(f"  onnx {name:5s} max |logit diff| {row['max_abs_logit_diff']:.2e}  "
                     f"agreement {100 * row['agreement']:.2f}%{extra}")
    return "\n".join(lines)

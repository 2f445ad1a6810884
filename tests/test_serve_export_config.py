"""Serve and export settings are typed config groups: the short flags, their `--group.field`
forms and a YAML file's serve:/export: section all set the same fields."""

from __future__ import annotations

import dataclasses

import pytest

from lmtune.cli import _normalized, group_settings, main, make_parser
from lmtune.config import Config, ConfigError, ExportConfig, ServeConfig


def settings(argv: list[str], group: str):
    """The group's settings for a command line, as `lmtune` reads it (--a_b is --a-b)."""
    return group_settings(make_parser().parse_args(_normalized(argv)), group)


@pytest.fixture
def serve_yaml(tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text("serve:\n  port: 9123\n  max_batch_size: 7\n  batching: false\n")
    return path


def test_serve_settings_come_from_the_yaml_file_then_the_flags(serve_yaml):
    from_file = settings(["serve", "runs/a", "--config", str(serve_yaml)], "serve")
    assert (from_file.port, from_file.max_batch_size, from_file.batching) == (9123, 7, False)
    assert from_file.host == "127.0.0.1" and from_file.max_wait_ms == 5.0  # defaults elsewhere
    both = settings(["serve", "runs/a", "--config", str(serve_yaml), "--port", "9000",
                     "--serve.max-wait-ms", "2.5", "--serve.batching", "true"], "serve")
    assert (both.port, both.max_wait_ms, both.batching, both.max_batch_size) == (9000, 2.5, True, 7)
    # The old flags keep their names and defaults, and write the same fields as the dotted ones.
    assert settings(["serve", "runs/a"], "serve") == ServeConfig()
    old = settings(["serve", "runs/a", "--max-batch-size", "64", "--no-batching", "--backend", "onnx",
                    "--quantized", "--api-key-file", "k.txt", "--max-chars", "50"], "serve")
    new = settings(["serve", "runs/a", "--serve.max-batch-size", "64", "--serve.batching", "false",
                    "--serve.backend", "onnx", "--serve.quantized", "--serve.api_key_file", "k.txt",
                    "--serve.max-chars=50"], "serve")
    assert old == new == dataclasses.replace(ServeConfig(), max_batch_size=64, batching=False, backend="onnx",
                                             quantized=True, api_key_file="k.txt", max_chars=50)
    # Whichever of the two forms comes last wins.
    assert settings(["serve", "r", "--serve.port", "1", "--port", "2"], "serve").port == 2


def test_lmtune_serve_passes_the_settings_to_the_server(serve_yaml, monkeypatch, capsys):
    import lmtune.serving

    calls = []
    monkeypatch.setattr(lmtune.serving, "serve", lambda runs, cfg: calls.append((runs, cfg)))
    assert main(["serve", "runs/a", "runs/b", "--config", str(serve_yaml), "--max-inputs", "3"]) == 0
    [(runs, cfg)] = calls
    assert runs == ["runs/a", "runs/b"] and (cfg.port, cfg.max_batch_size, cfg.max_inputs) == (9123, 7, 3)
    assert main(["serve", "runs/a", "--port", "eighty"]) == 2
    assert "serve.port expects a number, got 'eighty'" in capsys.readouterr().err
    assert main(["serve", "runs/a", "--serve.port", "70000"]) == 2
    assert "--serve.port must be in [0, 65535], got 70000" in capsys.readouterr().err
    assert main(["serve", "runs/a", "--serve.backend", "tpu"]) == 2
    assert "--serve.backend 'tpu': choose one of pytorch, onnx" in capsys.readouterr().err
    assert main(["serve", "runs/a", "--serve.prot", "1"]) == 2
    assert "did you mean --serve.port?" in capsys.readouterr().err
    assert len(calls) == 1


def test_the_python_api_takes_the_group_and_the_old_keywords(tmp_path, monkeypatch):
    import uvicorn

    import lmtune.serving as serving

    started = []
    monkeypatch.setattr(serving, "load_runs", lambda runs, backend, quantized: {})
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append((app, kw)))
    key = tmp_path / "key.txt"
    key.write_text(" s3cret \n")
    cfg = Config()
    cfg.serve.port, cfg.serve.max_body_bytes, cfg.serve.api_key_file = 9001, 2000, str(key)
    serving.serve(["runs/a"], cfg.serve)
    serving.serve(["runs/a"], cfg.serve, port=9002, max_batch=4, host="0.0.0.0")  # the earlier keywords
    (app, first), (_, second) = started
    assert (first["host"], first["port"]) == ("127.0.0.1", 9001)
    assert (second["host"], second["port"]) == ("0.0.0.0", 9002)
    limit = next(m for m in app.user_middleware if m.cls.__name__ == "BodyLimit")
    assert limit.kwargs["max_bytes"] == 2000
    with pytest.raises(TypeError, match="max_batchsize"):
        serving.serve(["runs/a"], max_batchsize=4)
    key.write_text("\n")
    with pytest.raises(ConfigError, match="the API key file is empty"):
        serving.serve(["runs/a"], cfg.serve)


def test_export_settings_short_dotted_and_yaml_agree(tmp_path, monkeypatch, capsys):
    import lmtune.export

    short = settings(["export", "runs/a", "--format", "onnx", "--quantize", "int8", "--sample", "64"], "export")
    dotted = settings(["export", "runs/a", "--export.format", "onnx", "--export.quantize", "int8",
                       "--export.sample", "64"], "export")
    path = tmp_path / "export.yaml"
    path.write_text("export:\n  format: onnx\n  quantize: int8\n  sample: 64\n")
    from_file = settings(["export", "runs/a", "--config", str(path)], "export")
    assert short == dotted == from_file == ExportConfig(format="onnx", quantize="int8", sample=64)
    assert settings(["export", "runs/a", "--merge", "--output", "out"], "export") == \
        ExportConfig(merge=True, output="out")

    calls = []
    monkeypatch.setattr(lmtune.export, "export_onnx", lambda run, **kw: calls.append((run, kw)) or {})
    assert main(["export", "runs/a", "--format", "onnx", "--export.quantize", "int8"]) == 0
    assert calls == [("runs/a", {"quantize": "int8", "data": None, "sample": 512, "quiet": False})]
    assert main(["export", "runs/a", "--format", "onnx", "--export.quantize", "int4"]) == 2
    assert "--export.quantize 'int4': choose one of none, int8" in capsys.readouterr().err
    assert main(["export", "runs/a", "--export.merge", "--export.format", "onnx"]) == 2
    assert "choose one: --merge" in capsys.readouterr().err
    assert len(calls) == 1


def test_serve_and_export_groups_round_trip_through_yaml(tmp_path, capsys):
    cfg = Config()
    cfg.override("serve.max-wait-ms", "12.5")
    cfg.override("serve.batching", "no")
    cfg.override("export.quantize", "int8")
    cfg.save(tmp_path / "c.yaml")
    again = Config.from_yaml(tmp_path / "c.yaml")
    assert again == cfg and again.serve.max_wait_ms == 12.5 and again.serve.batching is False
    assert again.export.quantize == "int8" and again.export.format is None
    assert main(["config", "--serve.port", "8080"]) == 0  # the commented file has both sections
    text = capsys.readouterr().out
    (tmp_path / "full.yaml").write_text(text)
    assert "\nserve:" in text and "\nexport:" in text
    assert Config.from_yaml(tmp_path / "full.yaml").serve.port == 8080
    with pytest.raises(ConfigError, match="serve.max_inputs expects a number"):
        Config.from_dict({"serve": {"max_inputs": "many"}})

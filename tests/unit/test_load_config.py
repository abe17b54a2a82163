"""Benchmarks under load in the config: continuous batching and serving settings, what is
identity and what is not, and the errors a person gets for what cannot be."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from collector.adapters.config import load_config
from collector.domain.errors import ConfigError
from collector.domain.model import BenchmarkSpec, Task

LLAMA = """{source: synthetic, architecture: LlamaForCausalLM,
                config: {hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1,
                         num_attention_heads: 2, vocab_size: 512}}"""


def load(tmp_path: Path, benchmarks: str, defaults: str = "") -> list[BenchmarkSpec]:
    path = tmp_path / "config.yml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        defaults:
          sequence_length: 128
          new_tokens: 32
        {defaults}
        suites:
          llm:
            benchmarks:
        """) + textwrap.indent(textwrap.dedent(benchmarks), " " * 6))
    return list(load_config(path).suites[0].benchmarks)


def problems(tmp_path: Path, benchmarks: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, benchmarks)
    return str(caught.value)


def test_a_serving_benchmark_takes_its_lengths_and_task_from_its_load(tmp_path: Path) -> None:
    (spec,) = load(tmp_path, f"""\
        - name: llama-serve
          model: {LLAMA}
          serving:
            server: {{}}
            profile: {{kind: poisson, rate: 4}}
            input_tokens: {{mean: 32, distribution: uniform, spread: 0.25}}
            output_tokens: {{mean: 8}}
            slos: {{ttft_ms: 500, tpot_ms: 50}}
        """)
    # The file's defaults (128, 32) are not this benchmark's lengths: its load's are.
    assert (spec.sequence_length, spec.new_tokens, spec.task) == (32, 8, Task.TEXT_GENERATION)
    assert spec.load == "poisson 4/s"
    assert spec.label.endswith("seq=32 new=8 [poisson 4/s]")
    assert spec.identity()["serving"]["slos"]["ttft_ms"] == 500


def test_the_load_is_identity_and_patience_and_credentials_are_not(tmp_path: Path) -> None:
    specs = load(tmp_path, """\
        - name: at-4
          model: {source: hub, id: org/model}
          serving:
            endpoint: {url: "http://10.0.0.5:8000", api_key_env: SERVING_KEY}
            profile: {kind: poisson, rate: 4}
        - name: at-8
          model: {source: hub, id: org/model}
          serving:
            endpoint: {url: "http://10.0.0.5:8000", api_key_env: SERVING_KEY}
            profile: {kind: poisson, rate: 8}
        - name: patient
          model: {source: hub, id: org/model}
          serving:
            endpoint: {url: "http://10.0.0.5:8000", api_key_file: /run/secrets/key}
            profile: {kind: poisson, rate: 16}
            request_timeout_s: 600
        """)
    at4, at8, patient = specs
    assert at4.series_id("h") != at8.series_id("h")
    ident = patient.identity()["serving"]
    assert "request_timeout_s" not in ident
    assert ident["endpoint"] == {"url": "http://10.0.0.5:8000", "model_name": None}
    assert "SERVING_KEY" not in str(at4.identity())


def test_continuous_batching_settings_are_identity(tmp_path: Path) -> None:
    a, b = load(tmp_path, f"""\
        - name: cb-256
          model: {LLAMA}
          batching: {{requests: 8, page_size: 256}}
        - name: cb-32
          model: {LLAMA}
          batching: {{requests: 8, page_size: 32}}
        """)
    assert a.label.endswith("[cb 8 req]")
    assert a.series_id("h") != b.series_id("h")


@pytest.mark.parametrize(("serving", "expected"), [
    ("{profile: {kind: poisson, rate: 4}}", "exactly one of server"),
    ("{server: {}, endpoint: {url: 'http://x:1'}}", "exactly one of server"),
    ("{server: {}, profile: {kind: poisson}}", "profile poisson needs a rate"),
    ("{server: {}, profile: {kind: concurrent}}", "needs a concurrency"),
    ("{server: {}, profile: {kind: synchronous, rate: 3}}", "takes no rate"),
    ("{server: {command: [serve, --port, '{prot}']}}", "unknown placeholder {prot}"),
    ("{server: {command: [serve, --port, '8000']}}", "put {port} in it"),
    ("{server: {}, requests: null}", "give requests or duration_s"),
    ("{endpoint: {url: 'ftp://x'}}", "serving.endpoint.url"),
    ("{endpoint: {url: 'http://u:p@x'}}", "serving.endpoint.url"),
    ("{endpoint: {url: 'http://x', api_key_env: A, api_key_file: /k}}", "not both"),
    ("{server: {}, input_tokens: {mean: 8, spread: 0.5}}", "spread needs distribution"),
    ("{server: {}, requests: '8'}", "serving.requests"),
])
def test_impossible_serving_settings_name_the_field(tmp_path: Path, serving: str,
                                                     expected: str) -> None:
    text = problems(tmp_path, f"""\
        - name: s
          model: {LLAMA}
          serving: {serving}
        """)
    assert "config.yml:" in text
    assert expected in text


def test_lengths_and_batch_are_the_loads_to_set(tmp_path: Path) -> None:
    text = problems(tmp_path, f"""\
        - name: s
          model: {LLAMA}
          sequence_length: 16
          batch_size: 4
          batching: {{requests: 4}}
        """)
    assert "set input_tokens.mean there instead of sequence_length" in text
    assert "set batching.requests or a profile instead" in text


def test_one_load_per_benchmark(tmp_path: Path) -> None:
    text = problems(tmp_path, f"""\
        - name: s
          model: {LLAMA}
          batching: {{}}
          serving: {{server: {{}}}}
        """)
    assert "not both" in text

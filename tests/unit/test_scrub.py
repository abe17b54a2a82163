"""Which environment variables are kept from worker processes
(collector/adapters/measure/scrub.py)."""

from __future__ import annotations

import pytest

from collector.adapters.measure.scrub import is_secret, scrub, unset_line, wrapper_script


@pytest.mark.parametrize(("name", "value"), [
    ("PGPASSWORD", "x"), ("PGHOST", "db"), ("PGSERVICEFILE", "/etc/pg"),
    ("COLLECTOR_DATABASE_URL", "postgresql://db/collector"),
    ("COLLECTOR_READER_PASSWORD", "x"), ("COLLECTOR_GRAFANA_DB_PASSWORD", "x"),
    ("POSTGRES_USER", "collector"), ("GITHUB_TOKEN", "x"), ("AWS_SECRET_ACCESS_KEY", "x"),
    ("AWS_ACCESS_KEY_ID", "x"), ("OPENAI_API_KEY", "x"), ("SSH_AUTH_SOCK", "/tmp/agent"),
    ("RESULTS_DB", "postgresql://u:pw@db/x"),  # a custom storage.database_url_env
    ("COLLECTOR_PUSHGATEWAY", "http://user:pw@push:9091"),
    ("LEGACY_DSN", "host=db password=pw"),
    # custom storage.database_url_env names without a password (libpq reads ~/.pgpass):
    ("RESULTS_DB", "postgresql://collector@db:5432/x"), ("RESULTS_DB", "postgres:///x"),
    ("RESULTS_DB", "host=db dbname=collector user=collector"),
])
def test_secrets(name: str, value: str) -> None:
    assert is_secret(name, value)


@pytest.mark.parametrize(("name", "value"), [
    ("HF_TOKEN", "hf_x"), ("HUGGING_FACE_HUB_TOKEN", "hf_x"), ("HF_HOME", "/cache"),
    ("TOKENIZERS_PARALLELISM", "false"), ("OMP_NUM_THREADS", "1"),
    ("TORCHINDUCTOR_CACHE_DIR", "/tmp/i"), ("CUDA_VISIBLE_DEVICES", "0"),
    ("HTTPS_PROXY", "http://user:pw@proxy:3128"), ("PATH", "/usr/bin"),
    ("COLLECTOR_DATA_DIR", "/data"), ("COLLECTOR_CALLGRIND_OUT", "/tmp/cg"),
    ("URL", "http://example.org/a@b"), ("GREETING", "host=world"),
    ("NOTE", "see postgresql://docs for this"),
])
def test_not_secrets(name: str, value: str) -> None:
    assert not is_secret(name, value)


def test_scrub_removes_only_the_secrets() -> None:
    env = {"PGPASSWORD": "x", "HOME": "/root", "GITHUB_TOKEN": "y"}
    assert scrub(env) == ["GITHUB_TOKEN", "PGPASSWORD"]
    assert env == {"HOME": "/root"}


def test_the_wrapper_unsets_names_never_values() -> None:
    text = wrapper_script("/opt/my python/bin/python3", ["PGPASSWORD", "odd.name"])
    assert "unset PGPASSWORD\n" in text  # a name a shell cannot unset is left to scrub()
    assert "odd.name" not in text
    assert text.endswith("exec '/opt/my python/bin/python3' \"$@\"\n")
    assert unset_line([]) == ""

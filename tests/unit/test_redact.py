"""`redact`: no form of connection string libpq accepts shows its password."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from collector.adapters.redact import redact, scrub, secrets_of
from collector.adapters.store.postgres import redact as store_redact

SECRET = "Zq9-secret"  # noqa: S105 - a made-up password the tests look for

CASES = [
    (f"postgresql://collector:{SECRET}@db:5432/collector",
     "postgresql://collector:***@db:5432/collector"),
    (f"postgres://u:{SECRET}#frag@h/db", "postgres://u:***@h/db"),
    (f"postgresql://u:{SECRET}/more@h/db", "postgresql://u:***@h/db"),
    (f"postgresql://u:{SECRET}@x@h/db", "postgresql://u:***@h/db"),
    (f"postgresql://u:a[{SECRET}@h/db", "postgresql://u:***@h/db"),
    (f"postgresql://u:{SECRET}@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
    (f"postgresql://h/db?sslmode=require&password={SECRET}",
     "postgresql://h/db?sslmode=require&password=***"),
    (f"postgresql://h/db?pass%77ord={SECRET}", "postgresql://h/db?pass%77ord=***"),
    (f"postgresql://u@h1:1,h2:2/db?sslpassword={SECRET}&application_name=x",
     "postgresql://u@h1:1,h2:2/db?sslpassword=***&application_name=x"),
    (f"host=db password={SECRET} dbname=collector", "host=db password=*** dbname=collector"),
    (f"host=db password = '{SECRET} with \\' quote' dbname=c",
     "host=db password=*** dbname=c"),
    (f"host=db sslpassword={SECRET}", "host=db sslpassword=***"),
    ("postgresql://collector@timescaledb:5432/collector",
     "postgresql://collector@timescaledb:5432/collector"),
    ("host=/tmp dbname=x", "host=/tmp dbname=x"),
]


@pytest.mark.parametrize(("url", "expected"), CASES)
def test_every_form_is_masked(url: str, expected: str) -> None:
    assert redact(url) == expected
    assert SECRET not in redact(url)
    assert store_redact(url) == redact(url)  # the store shows the same


@pytest.mark.parametrize("url", [
    f"postgresql://u:{SECRET}@h/db?password",     # libpq: missing "=" in the query
    f"host=db password={SECRET} garbage",         # libpq: missing "=" after garbage
    f"nonsense password={SECRET}",
    f"host=db password='{SECRET}",                # unterminated quote
    f"postgresql://u:{SECRET}@h:notaport/db",
])
def test_strings_libpq_rejects_show_no_secret(url: str) -> None:
    assert SECRET not in redact(url)


def test_a_password_that_shows_elsewhere_hides_everything() -> None:
    # The password is also the host name: masking only the user-info would still show it.
    url = "postgresql://u:dbhost@dbhost/x"
    assert conninfo_to_dict(url)["password"] == "dbhost"  # noqa: S105 - the test's own value
    assert "dbhost" not in redact(url)


@pytest.mark.parametrize("url", [url for url, _ in CASES if SECRET in url])
def test_scrub_removes_the_secret_from_error_texts(url: str) -> None:
    parsed = conninfo_to_dict(url)
    said = parsed.get("password") or parsed.get("sslpassword") or ""
    text = f"connection to server failed ({url}): password {said!r} rejected"
    assert SECRET not in scrub(text, url)


def test_secrets_include_the_percent_decoded_password() -> None:
    url = "postgresql://u:p%40ss%2Fw@h/db"
    assert "p@ss/w" in secrets_of(url)
    assert "p@ss/w" not in scrub("bad password p@ss/w", url)
    assert redact(url) == "postgresql://u:***@h/db"


@pytest.mark.parametrize("url,secret", [
    ("postgresql://u:p%23a@h/db", "p#a"),
    ("postgresql://u:pw[x@h/db", "pw[x"),
    ("host=h password=se/cr#et dbname=d", "se/cr#et"),
])
def test_a_database_error_names_no_password(url: str, secret: str) -> None:
    """classify() turns a psycopg error into the store error users see: every form of the
    URL is masked, in the location and in the error's own text."""
    import psycopg

    from collector.adapters.store.pg_errors import classify

    error = classify(psycopg.OperationalError(f"connection to {url} failed: {secret}"), url)
    assert secret not in str(error)
    assert "***" in str(error)

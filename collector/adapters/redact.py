"""Secrets out of every text the collector shows, logs or keeps.

Two tools. `redact` (a database URL) and `redact_url` (any other URL: a Pushgateway, a
package index) give the only form of a connection string that is ever printed. `scrub`
removes secrets *by value* from a text something else wrote (libpq, urllib, pip), whatever
it quoted: a message can carry the raw string the user gave, a part of it libpq misread, or
an escaped or percent-encoded form of it, so no pattern could catch them all.

Reading a database URL. libpq accepts two forms, a URI (`postgresql://user:secret@host/db?
password=...`) and `key=value` pairs (`host=h password='se cret'`), and reads a URI more
loosely than urllib does: a `#`, `/` or `@` in the password, brackets anywhere, several
hosts. It also keeps what a person does not see: a UTF-8 byte-order mark, quotes around
the URL, spaces. So `normalise_url` strips those first, `database_url_problem` says (never
quoting the URL) why a string cannot be one (another scheme, an unencoded `@` in the
user-info), and `secrets_of` lists every string that could be the password in every
plausible reading: libpq's own parse, the user-info split at the first and at the last `@`,
the raw and the normalised string, each longer fragment of the password split at `@`, `:`
and `/`, password parameters (raw and percent-decoded).

What `scrub` removes: the secrets of the connection string it is given, those the process
met so far (`remember`: the database URL of every store opened, a push URL, an index URL)
and those of its environment (`environment_secrets`: $PGPASSWORD and other password or token
variables, the user-info of any URL in a variable, e.g. PIP_INDEX_URL), each in every form a
message may hold it (as is, percent-encoded, Python- or JSON-escaped, libpq-quoted).
`ScrubFilter` applies it to every log record of a handler.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
_SECRET_KEYS = frozenset({"password", "sslpassword"})
_SCHEMES = ("postgresql://", "postgres://")
_POSTGRES = frozenset({"postgresql", "postgres"})
# key = 'quoted \' value' | bare-value, as libpq's conninfo_parse reads them.
_PAIR = re.compile(r"""(?P<key>[A-Za-z_]+)\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'?|\S*)""")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
# A URL anywhere in a text, and its user-info (whatever precedes its last '@' before a '/').
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s'\"<>]*)@")
# Characters a person does not see around a pasted URL: whitespace, a byte-order mark, a
# zero-width space; and the quotes of a shell or .env file.
_INVISIBLE = "\ufeff\u200b\u2060"
_QUOTES = "'\"`"
# Fragments of a password (split at '@', ':' and '/') shorter than this are not scrubbed on
# their own: they would mask common words in every message.
_MIN_FRAGMENT = 4
# Secrets of the environment and those remembered are scrubbed from every text, so they
# must be long enough not to be ordinary words or numbers.
_MIN_REMEMBERED = 4
_SECRET_VARIABLE = re.compile(r"PASSW(OR)?D|SECRET|TOKENS?($|_)|CREDENTIAL|API_?KEY|"
                              r"ACCESS_?KEY|PRIVATE_?KEY", re.IGNORECASE)
_NOT_A_VALUE = re.compile(r"_(FILE|PATH|DIR)$", re.IGNORECASE)  # names a file, not the secret
_PLAIN_WORDS = frozenset({"true", "false", "none", "null", "yes", "no", "on", "off"})
_GENERIC_SECRET_KEY = re.compile(r"pass|secret|token|key|auth|sig", re.IGNORECASE)


# -- reading connection strings -----------------------------------------------------------


def normalise_url(raw: str) -> str:
    """`raw` without what a person does not see or means as part of it: surrounding
    whitespace, byte-order marks and zero-width spaces, and surrounding quotes (repeatedly:
    `" 'postgresql://...' "`)."""
    text = raw
    while True:
        stripped = text.strip().strip(_INVISIBLE).strip()
        if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in _QUOTES:
            stripped = stripped[1:-1]
        if stripped == text:
            return text
        text = stripped


def _libpq_secrets(conninfo: str) -> list[str] | None:
    """The password values libpq reads from `conninfo`; None when it cannot parse it."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parsed = conninfo_to_dict(conninfo)
    except Exception:  # any parse failure: the caller masks conservatively
        return None
    return [str(parsed[key]) for key in _SECRET_KEYS if parsed.get(key)]


def database_url_problem(url: str) -> str | None:  # noqa: PLR0911 - one return per problem
    """Why `url` (normalised) cannot be a PostgreSQL connection string, in words that never
    quote it (the sentence continues "the database URL ..."); None when it can be."""
    if not url:
        return "is empty"
    scheme = _SCHEME.match(url)
    if scheme is not None:
        name = scheme["scheme"].lower()
        if name.split("+", 1)[0] in _POSTGRES and name not in _POSTGRES:
            return (f"uses SQLAlchemy's scheme {name}://, which libpq does not read: write "
                    "postgresql://USER:PASSWORD@HOST:PORT/DBNAME")
        if name not in _POSTGRES:
            shown = name if len(name) <= 16 else f"{name[:16]}..."
            return (f"is a {shown}:// URL, not a PostgreSQL one: write "
                    "postgresql://USER:PASSWORD@HOST:PORT/DBNAME (or libpq key=value pairs)")
        authority = url[scheme.end():].split("/", 1)[0].split("?", 1)[0]
        if authority.count("@") > 1:
            return ("has an unencoded '@' in its user name or password: percent-encode it "
                    "as %40 (libpq would take what follows it for the host name)")
        return None
    if "://" in url:
        return "is neither a postgresql:// URL nor libpq key=value pairs"
    if _libpq_secrets(url) is None:
        return ("cannot be read as a postgresql:// URL nor as libpq key=value pairs "
                "(host=... dbname=...)")
    return None


def _password_secrets(password: str) -> set[str]:
    """A password, and its fragments at '@', ':' and '/' long enough to scrub alone (libpq
    cuts an unencoded password there and shows the rest as a host, port or database)."""
    found = {password}
    found.update(part for part in re.split(r"[@:/]", password) if len(part) >= _MIN_FRAGMENT)
    return found


def _uri_secrets(uri: str, *, token: bool) -> set[str]:
    """The secrets of a URI's user-info and query, in every reading: the user-info up to the
    first '@' (libpq's, urllib's), up to the last '@' (what a person meant), and up to the
    last '@' before the first '/'. `token`: a user-info without a colon (before the first
    '/') is a secret too (an access token: `https://TOKEN@host`), not a user name."""
    rest = uri.split("://", 1)[1]
    head, _, query = rest.partition("?")
    before, hash_, after = head.partition("#")
    if hash_ and "@" not in after:  # a fragment, not a '#' in the password
        head = before
    authority = head.split("/", 1)[0]
    readings = {head.rpartition("@")[0], authority.rpartition("@")[0]}
    if "@" in head:
        readings.add(head.partition("@")[0])
    found: set[str] = set()
    for userinfo in filter(None, readings):
        _user, colon, password = userinfo.partition(":")
        if colon and password:
            found |= _password_secrets(password)
        elif token and "/" not in userinfo:
            found |= _password_secrets(userinfo)
    for param in query.split("&"):
        key, equals, value = param.partition("=")
        name = unquote(key).strip().lower()
        secret = name in _SECRET_KEYS if not token else bool(_GENERIC_SECRET_KEY.search(name))
        if equals and secret and value:
            found.update(filter(None, (value, value.partition("#")[0])))
    return found


def secrets_of(conninfo: str) -> list[str]:
    """Every string of `conninfo` (a database URL or key=value pairs, as given) that could
    be a password, longest first, for scrubbing error texts: libpq's parse of the raw and of
    the normalised string, the URI's user-info in every reading (and the longer fragments of
    its password), each password parameter's value, each raw and percent-decoded."""
    found: set[str] = set()
    for form in {conninfo, normalise_url(conninfo)}:
        found.update(_libpq_secrets(form) or [])
        if _SCHEME.match(form):
            found |= _uri_secrets(form, token=False)
            continue
        for match in _PAIR.finditer(form):
            if match["key"].lower() in _SECRET_KEYS:
                value = match["value"]
                found.add(value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
                          if len(value) >= 2 and value[0] == value[-1] == "'"
                          else value.strip("'"))
        if "://" in form:  # a URL behind what libpq and a person do not see
            found.update(text_url_secrets(form))
    found |= {unquote(value) for value in found}
    return sorted((s for s in found if s and s not in MASK), key=len, reverse=True)


def url_secrets(url: str) -> list[str]:
    """The secrets of any URL (a Pushgateway, a package index, a database): the password of
    its user-info, or on http(s) the whole user-info when it has no colon (a token, as in
    `https://TOKEN@host`; elsewhere that is a user name), and secret-looking query
    parameters; raw and percent-decoded, longest first."""
    normal = normalise_url(url)
    scheme = _SCHEME.match(normal)
    if scheme is None:
        return []
    if scheme["scheme"].lower() in _POSTGRES:
        return secrets_of(normal)
    found = _uri_secrets(normal, token=scheme["scheme"].lower().endswith(("http", "https")))
    found |= {unquote(value) for value in found}
    return sorted((s for s in found if s and s not in MASK), key=len, reverse=True)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """`url` (normalised; `http://` added where it has no scheme) without its user-info,
    and the user and password that held (percent-decoded; a token alone is the user, with
    an empty password); (url, None, None) when it has none before its path."""
    url = normalise_url(url)
    if _SCHEME.match(url) is None:
        url = f"http://{url}"
    scheme = _SCHEME.match(url)
    assert scheme is not None  # it has one now
    authority, slash, path = url[scheme.end():].partition("/")
    if "@" not in authority:
        return url, None, None
    userinfo, _, host = authority.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return (f"{scheme[0]}{host}{slash}{path}", unquote(user),
            unquote(password) if colon else "")


def text_url_secrets(text: str) -> list[str]:
    """The secrets of every URL in `text` (pip arguments, a list of index URLs)."""
    found: set[str] = set()
    for match in _URL_IN_TEXT.finditer(text):
        found.update(url_secrets(match[0]))
    return sorted(found, key=len, reverse=True)


# -- the forms shown ----------------------------------------------------------------------


def _mask_uri(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    head, question, query = rest.partition("?")
    if "@" in head:
        userinfo, _, location = head.rpartition("@")
        user = userinfo.split(":", 1)[0]
        head = f"{user}:{MASK}@{location}" if ":" in userinfo else f"{user}@{location}"
    if question:
        params = []
        for param in query.split("&"):
            key, equals, _value = param.partition("=")
            secret = equals and unquote(key).strip().lower() in _SECRET_KEYS
            params.append(f"{key}={MASK}" if secret else param)
        query = "&".join(params)
    return f"{scheme}://{head}{question}{query}"


def _mask_pairs(conninfo: str) -> str:
    def one(match: re.Match[str]) -> str:
        if match["key"].lower() in _SECRET_KEYS:
            return f"{match['key']}={MASK}"
        return match[0]

    return _PAIR.sub(one, conninfo)


def _shown(secret: str, text: str) -> bool:
    return secret in text or unquote(secret) in text


def redact(conninfo: str) -> str:
    """`conninfo` (a URI or key=value pairs; normalised first) with every password replaced
    by ***; only the scheme when a secret would still show."""
    conninfo = normalise_url(conninfo)
    is_uri = _SCHEME.match(conninfo) is not None
    masked = _mask_uri(conninfo) if is_uri else _mask_pairs(conninfo)
    if not is_uri and _libpq_secrets(conninfo) is None:
        return f"(connection string not shown: it does not parse; {len(conninfo)} chars)"
    if any(_shown(secret, masked) for secret in secrets_of(conninfo)):
        return conninfo.split("://", 1)[0] + f"://{MASK}" if is_uri else MASK
    return masked


def redact_url(url: str) -> str:
    """Any URL with its whole user-info (a user and password, or a token) replaced by ***,
    and secret-looking query parameters masked; only the scheme when a secret would still
    show (and `(URL not shown)` for what is not a URL)."""
    url = normalise_url(url)
    scheme = _SCHEME.match(url)
    if scheme is None:
        return "(URL not shown)" if url_secrets(f"http://{url}") else url
    head, question, query = url[scheme.end():].partition("?")
    if "@" in head.split("/", 1)[0]:  # the user-info ends at the last '@' before the path
        authority, slash, path = head.partition("/")
        head = f"{MASK}@{authority.rpartition('@')[2]}{slash}{path}"
    elif ":" in head.rpartition("@")[0]:  # or, with a "/" in the password, at the last "@"
        head = f"{MASK}@{head.rpartition('@')[2]}"
    if question:
        params = []
        for param in query.split("&"):
            key, equals, _value = param.partition("=")
            secret = equals and _GENERIC_SECRET_KEY.search(unquote(key))
            params.append(f"{key}={MASK}" if secret else param)
        query = "&".join(params)
    shown = f"{scheme[0]}{head}{question}{query}"
    if any(_shown(secret, shown) for secret in url_secrets(url)):
        return f"{scheme[0]}{MASK}"
    return shown


def redact_urls(text: str) -> str:
    """`text` (a pip argument, say) with the user-info of every URL in it replaced by ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)


# -- scrubbing by value -------------------------------------------------------------------


def _forms(secret: str) -> set[str]:
    """The forms a message may hold `secret` in: as is, percent-encoded (fully, as a URL
    keeps it, as a form value), escaped (Python's repr, JSON), quoted as libpq quotes it."""
    forms = {secret, quote(secret, safe=""), quote(secret, safe="/:@"), quote_plus(secret),
             repr(secret)[1:-1], json.dumps(secret)[1:-1],
             secret.replace("\\", "\\\\").replace("'", "\\'")}
    return {form for form in forms if form and form not in MASK}


def _needles(secrets: Iterable[str]) -> list[str]:
    """Every form of every secret, longest first (a longer one holds a shorter one)."""
    found: set[str] = set()
    for secret in secrets:
        found |= _forms(secret)
    return sorted(found, key=len, reverse=True)


def _worth_remembering(value: str) -> bool:
    text = value.strip()
    return (len(text) >= _MIN_REMEMBERED and not text.isdigit()
            and text.lower() not in _PLAIN_WORDS)


class _Remembered:
    """The secrets this process met (thread-safe; the needles are rebuilt on a change)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.secrets: frozenset[str] = frozenset()
        self.needles: tuple[str, ...] = ()

    def add(self, values: Iterable[str | None]) -> None:
        new = {v for v in values if v and _worth_remembering(v) and v not in MASK}
        with self._lock:
            if new <= self.secrets:
                return
            self.secrets = self.secrets | new
            self.needles = tuple(_needles(self.secrets))


_REMEMBERED = _Remembered()


def remember(*secrets: str | None) -> None:
    """Scrub these from every text from now on (in this process)."""
    _REMEMBERED.add(secrets)


def remember_url(conninfo: str) -> None:
    """Scrub the secrets of a database URL from every text from now on."""
    _REMEMBERED.add(secrets_of(conninfo))


def remember_urls(text: str) -> None:
    """Scrub the secrets of every URL in `text` (a push URL, pip arguments) from now on."""
    _REMEMBERED.add(text_url_secrets(text))


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secrets of `environ` (default: os.environ): $PGPASSWORD and the values of other
    password, secret or token variables (not those naming a file), the user-info of every
    URL in any variable (PIP_INDEX_URL=https://TOKEN@host, a database URL under any name)
    and the password of a libpq key=value string. Short values and plain words are left
    out: they would mask ordinary text."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in list(env.items()):
        if not value:
            continue
        if name == "PGPASSWORD" or (_SECRET_VARIABLE.search(name)
                                    and not _NOT_A_VALUE.search(name)):
            found.add(value)
        if "://" in value:
            found.update(text_url_secrets(value))
            if normalise_url(value).lower().startswith(_SCHEMES):
                found.update(secrets_of(value))
        elif "password" in value.lower():
            found.update(secrets_of(value))
    return sorted((s for s in found if _worth_remembering(s)), key=len, reverse=True)


def scrub(text: str, conninfo: str | None = None) -> str:
    """`text` (an error message, a log line) without any secret: those of `conninfo` (the
    raw string itself becomes its redacted form), those remembered, those of the
    environment; each in every form it may take."""
    if not text:
        return text
    if conninfo:
        shown = redact(conninfo)
        for raw in sorted({conninfo, normalise_url(conninfo), repr(conninfo)[1:-1]},
                          key=len, reverse=True):
            if raw:
                text = text.replace(raw, shown)
        for needle in _needles(secrets_of(conninfo)):
            text = text.replace(needle, MASK)
    for needle in _REMEMBERED.needles:
        text = text.replace(needle, MASK)
    for needle in _needles(environment_secrets()):
        text = text.replace(needle, MASK)
    return text


class ScrubFilter(logging.Filter):
    """A handler's filter: each record's message, traceback and stack without secrets
    (`scrub`), whatever the code that logged it put in."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: the handler reports it (handleError)
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True

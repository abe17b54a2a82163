"""Connection strings without their secrets: the only form ever logged, printed or stored.

libpq accepts two forms, a URI (`postgresql://user:secret@host/db?password=...`) and
`key=value` pairs (`host=h password='se cret'`), and reads a URI more loosely than
urllib does: a `#`, `/` or `@` in the password, brackets anywhere, several hosts. So the
URI's user-info (everything before its last `@`) and every password-like parameter are
masked by hand, the pairs form is parsed by libpq itself (psycopg.conninfo), and the result
is checked against what libpq would send as the password: if that secret still shows, or
the string cannot be read at all, nothing but the scheme is shown.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
_SECRET_KEYS = frozenset({"password", "sslpassword"})
_SCHEMES = ("postgresql://", "postgres://")
# key = 'quoted \' value' | bare-value, as libpq's conninfo_parse reads them.
_PAIR = re.compile(r"""(?P<key>[A-Za-z_]+)\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'?|\S*)""")


def _libpq_secrets(conninfo: str) -> list[str] | None:
    """The password values libpq reads from `conninfo`; None when it cannot parse it."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parsed = conninfo_to_dict(conninfo)
    except Exception:  # any parse failure: the caller masks conservatively
        return None
    return [str(parsed[key]) for key in _SECRET_KEYS if parsed.get(key)]


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
    """`conninfo` (a URI or key=value pairs) with every password replaced by ***."""
    is_uri = conninfo.lower().startswith(_SCHEMES)
    masked = _mask_uri(conninfo) if is_uri else _mask_pairs(conninfo)
    secrets = _libpq_secrets(conninfo)
    if secrets is None and not is_uri:
        return f"(connection string not shown: it does not parse; {len(conninfo)} chars)"
    if secrets and any(_shown(secret, masked) for secret in secrets):
        return conninfo.split("://", 1)[0] + f"://{MASK}" if is_uri else MASK
    return masked


def secrets_of(conninfo: str) -> list[str]:
    """Every string of `conninfo` that could be a password, longest first, for scrubbing
    error texts: libpq's parse, plus the URI's user-info after its first colon, plus each
    password-like parameter's value (raw and percent-decoded)."""
    found = set(_libpq_secrets(conninfo) or [])
    if conninfo.lower().startswith(_SCHEMES):
        head, _, query = conninfo.split("://", 1)[1].partition("?")
        userinfo = head.rpartition("@")[0]
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
        for param in query.split("&"):
            key, equals, value = param.partition("=")
            if equals and unquote(key).strip().lower() in _SECRET_KEYS:
                found.add(value)
    else:
        for match in _PAIR.finditer(conninfo):
            if match["key"].lower() in _SECRET_KEYS:
                found.add(match["value"].strip("'"))
    found |= {unquote(value) for value in found}
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text: str, conninfo: str) -> str:
    """`text` (an error message) with every secret of `conninfo` replaced by ***."""
    for secret in secrets_of(conninfo):
        text = text.replace(secret, MASK)
    return text

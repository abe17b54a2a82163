"""An external endpoint's API key: read by the collector (the parent), from the environment
variable or the file the config names, never from the config itself.

The parent reads it because workers never see the collector's secrets (collector/adapters/
measure/scrub.py removes *_KEY, *_TOKEN and the like from their environment); it goes to the
worker that drives the endpoint in that benchmark's payload only, is sent in the
Authorization header only, and no message here or there quotes it.
"""

from __future__ import annotations

import os

from collector.adapters.files import ReadFailure, read_bounded
from collector.domain.serving import Endpoint

MAX_KEY_BYTES = 16 * 1024


class KeyUnavailable(Exception):
    """The key's variable is unset or empty, or its file cannot be read or is not one line."""


def endpoint_key(endpoint: Endpoint) -> str | None:
    """The endpoint's key (None when it needs none)."""
    if endpoint.api_key_env is not None:
        value = os.environ.get(endpoint.api_key_env, "").strip()
        if not value:
            raise KeyUnavailable(f"the environment variable {endpoint.api_key_env} "
                                 "(serving.endpoint.api_key_env) is not set or empty")
        return _one_line(value, f"the environment variable {endpoint.api_key_env}")
    if endpoint.api_key_file is not None:
        try:
            data = read_bounded(endpoint.api_key_file, MAX_KEY_BYTES)
        except (OSError, ReadFailure) as exc:
            reason = exc.reason if isinstance(exc, ReadFailure) else (exc.strerror or "")
            raise KeyUnavailable(f"cannot read the API key file {endpoint.api_key_file!r} "
                                 f"(serving.endpoint.api_key_file): {reason}") from None
        return _one_line(data.decode("utf-8", "replace").strip(),
                         f"the API key file {endpoint.api_key_file!r}")
    return None


def _one_line(value: str, where: str) -> str:
    if not value or "\n" in value or "\r" in value:
        raise KeyUnavailable(f"{where} must hold one non-empty line (the key)")
    return value

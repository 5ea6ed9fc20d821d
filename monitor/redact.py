"""Masking of secrets in text that leaves the process: log lines, error messages.

Two layers, because a secret can hide anywhere. Known values (every configured
secret, registered at start-up by the app) are replaced wherever they appear,
including in librdkafka's own log lines and exception text. Shapes that look
like credentials (URL userinfo, `clientSecret=...` inside a compound string,
PEM private keys, Authorization headers) are masked even when the value was
never registered.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

MASK = "***"
# Values shorter than this are not masked by value: replacing every "ab" would
# wreck the log and protect nothing (such a secret is guessable anyway).
MIN_SECRET_LENGTH = 4
MAX_SECRETS = 1000  # bounded: the configuration holds a few dozen at most

# Words that make a key (or a key=value pair inside a string) hold a secret.
SECRET_WORD = r"(?:password|passwd|passphrase|secret|token|credentials?|api[_.\-]?key|user\.info)"  # noqa: S105

_URL_USERINFO = re.compile(r"(?<=://)[^/@\s\"']+@")
_SECRET_NAME = re.compile(SECRET_WORD, re.I)
# key=value (or key: value); masked when the key names a secret. Matching any
# key and testing it after is linear, where a pattern with the words inside
# backtracks over every character of a long line.
_PAIR = re.compile(r"(?<![\w.\-])([\w.\-]+)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)")
_AUTH_HEADER = re.compile(r"(?i)\b(basic|bearer)(\s+)[A-Za-z0-9._~+/=\-]{8,}")
_PEM_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
)


_WORDS = ("passw", "secret", "token", "credential", "apikey", "api_key", "api-key", "user.info")


def mask_patterns(text: str) -> str:
    """Mask credential-shaped parts of `text`; known values are not needed.

    Cheap substring checks gate each pattern: this runs on every log event, and
    librdkafka's debug=all writes thousands of lines a second.
    """
    if "PRIVATE KEY" in text:
        text = _PEM_KEY.sub("[private key redacted]", text)
    if "@" in text:
        text = _URL_USERINFO.sub(MASK + "@", text)
    lower = text.lower()
    if "basic" in lower or "bearer" in lower:
        text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    if any(word in lower for word in _WORDS):
        text = _PAIR.sub(_mask_pair, text)
    return text


def _mask_pair(match: re.Match[str]) -> str:
    if _SECRET_NAME.search(match.group(1)):
        return match.group(1) + match.group(2) + MASK
    return match.group(0)


def _secret_pairs(text: str) -> list[tuple[str, str]]:
    """(key, value) of every key=value in `text` whose key names a secret."""
    return [
        (m.group(1), m.group(3).strip("\"'"))
        for m in _PAIR.finditer(text)
        if _SECRET_NAME.search(m.group(1))
    ]


def looks_secret(text: str) -> str | None:
    """What in `text` is credential-shaped (for refusing it in a non-secret map), or None."""
    if _PEM_KEY.search(text):
        return "a PEM private key"
    if _URL_USERINFO.search(text):
        return "credentials in a URL"
    if _AUTH_HEADER.search(text):
        return "an authorization header value"
    pairs = _secret_pairs(text)
    if pairs:
        return f"a {pairs[0][0]!r} value"
    return None


def derived_values(secret: str) -> set[str]:
    """The secret and the forms it may take in text: its password part, encodings.

    `user:password` (basic auth) also appears as the password alone and base64
    encoded in an Authorization header; a compound `k=v k2=v2` string (e.g.
    sasl.oauthbearer.config) contributes the values of its secret-looking keys;
    a URL contributes its userinfo.
    """
    found = {secret}
    _user, sep, password = secret.partition(":")
    if sep and password and "//" not in secret:
        found.update({password, base64.b64encode(secret.encode()).decode()})
    found.update(value for _key, value in _secret_pairs(secret))
    for url in re.findall(r"://([^/@\s\"']+)@", secret):
        found.add(url)
        password = url.partition(":")[2]
        found.update({password, unquote(password)})
    found.update({quote(v, safe="") for v in list(found)})
    return {v for v in found if len(v) >= MIN_SECRET_LENGTH}


class Redactor:
    """Replaces registered secret values and credential shapes in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Register secret values (and their derived forms); safe from any thread."""
        with self._lock:
            values = set(self._values)
            for secret in secrets:
                if secret:
                    values |= derived_values(secret)
            # Longest first, so a secret containing another is replaced whole.
            self._values = tuple(sorted(values, key=len, reverse=True)[:MAX_SECRETS])

    def clear(self) -> None:
        with self._lock:
            self._values = ()

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return mask_patterns(text)

    def scrub(self, value: Any) -> Any:
        """`value` with every string inside it (dicts, lists, tuples) redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(v) for v in value)
        return value


# The process-wide redactor: the app registers the configured secrets, the log
# pipeline and the command line's error output apply it.
REDACTOR = Redactor()

"""What every config section shares: unknown keys refused, values frozen, label-safe
names, regexes checked, and no secret in a map that gets logged."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from monitor.redact import SECRET_WORD, looks_secret

LABEL_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# Client keys (librdkafka's, the registry client's) whose values are secrets
# wherever they appear; sasl.oauthbearer.config is a compound "k=v k=v" string
# that may carry clientSecret=... .
_SECRET_KEY = re.compile(rf"({SECRET_WORD}|key\.pem|private\.key|oauthbearer\.config)", re.I)
# Keys naming where a secret is, not the secret itself (their values are still
# checked for credentials, e.g. a URL with userinfo).
_SECRET_KEY_EXEMPT = re.compile(r"\.(url|location|file|source|id)$", re.I)


def refuse_plain_secrets(value: dict[str, Any], section: str, secret_home: str) -> None:
    """A secret in a map that is logged is refused with where to put it instead."""
    for key, item in value.items():
        if _SECRET_KEY.search(key) and not _SECRET_KEY_EXEMPT.search(key):
            raise ValueError(
                f"{key!r} holds a secret: put it under {secret_home} so it is never logged"
            )
        found = looks_secret(item) if isinstance(item, str) else None
        if found:
            raise ValueError(
                f"{key!r}: the value holds {found}: put the whole entry under "
                f"{secret_home} so it is never logged"
            )


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def valid_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
    return value

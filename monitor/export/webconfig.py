"""TLS and basic auth for the HTTP endpoints, in Prometheus' web-config.yml format.

Operators already write this file for node_exporter and Prometheus itself
(exporter-toolkit), so Tidemark reads the same keys rather than inventing its own.
Relative paths are relative to the web-config file, as in exporter-toolkit. Keys
exporter-toolkit knows but Tidemark does not implement are refused by name, so a
copied file never silently loses a protection it asked for.

The file is YAML read here, not in monitor/config.py, because it is a separate
file with its own format; errors still surface as ConfigError naming the file,
the key and the problem. Password hashes and passwords never appear in errors,
logs or reprs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import structlog
import yaml

from monitor.errors import ConfigError

log = structlog.get_logger("tidemark.http")

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# exporter-toolkit's client_auth_type values. The two that accept a certificate
# without verifying it have no equivalent in Python's ssl module.
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
}
_TOOLKIT_TLS_KEYS = {
    "cert",
    "key",
    "client_ca",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
}
_TOP_KEYS = {"tls_server_config", "basic_auth_users"}
_TOOLKIT_TOP_KEYS = {"http_server_config", "rate_limit"}
_BCRYPT = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")
# Bounded: successful (user, password) checks remembered so a scrape every few
# seconds does not pay bcrypt's ~60 ms each time; failures are never cached.
AUTH_CACHE_LIMIT = 256
# Re-check certificate files for rotation at most this often.
_RELOAD_EVERY = 1.0


@dataclass(slots=True)
class TLSSettings:
    """A server SSLContext that follows certificate rotation on disk."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None
    client_auth_type: str
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    _context: ssl.SSLContext | None = field(default=None, repr=False)
    _stamp: tuple[float, ...] = field(default=(), repr=False)
    _checked: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def requires_client_cert(self) -> bool:
        return self.client_auth_type == "RequireAndVerifyClientCert"

    def _files(self) -> list[Path]:
        files = [self.cert_file, self.key_file]
        return [*files, self.client_ca_file] if self.client_ca_file else files

    def _mtimes(self) -> tuple[float, ...]:
        return tuple(os.stat(f).st_mtime for f in self._files())

    def build(self) -> ssl.SSLContext:
        """A fresh context from the files; ssl.SSLError/OSError say what failed."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = self.min_version
        ctx.maximum_version = self.max_version
        # An encrypted key gets an empty password (and fails) instead of a prompt
        # on a terminal a daemon does not have.
        ctx.load_cert_chain(self.cert_file, self.key_file, password=b"")
        if self.client_ca_file is not None:
            ctx.load_verify_locations(cafile=self.client_ca_file)
        ctx.verify_mode = _CLIENT_AUTH[self.client_auth_type]
        return ctx

    def context(self) -> ssl.SSLContext:
        """The current context; rebuilt when a file changed (a rotation), else reused.

        A rotation caught half-written keeps the previous context and logs; the
        next check retries, so a renewed certificate is picked up within a second.
        """
        with self._lock:
            now = time.monotonic()
            if self._context is not None and now - self._checked < _RELOAD_EVERY:
                return self._context
            self._checked = now
            try:
                stamp = self._mtimes()
                if self._context is None or stamp != self._stamp:
                    self._context, self._stamp = self.build(), stamp
                    if self._stamp:
                        log.info("tls_certificate_loaded", cert_file=str(self.cert_file))
            except (OSError, ssl.SSLError) as exc:
                if self._context is None:
                    raise
                log.error("tls_reload_failed", cert_file=str(self.cert_file), error=str(exc))
            return self._context


class BasicAuth:
    """basic_auth_users: user -> bcrypt hash, checked with a bounded success cache."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self._users = users
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self._decoy: bytes | None = None

    def __repr__(self) -> str:  # never the hashes
        return f"BasicAuth(users={sorted(self._users)})"

    @property
    def users(self) -> list[str]:
        return sorted(self._users)

    @staticmethod
    def credentials(header: str | None) -> tuple[str, str] | None:
        """(user, password) from an Authorization header, or None when absent/garbled."""
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        return (user, password) if sep else None

    def _key(self, user: str, password: str) -> bytes:
        stored = self._users.get(user, b"")
        return hashlib.sha256(b"\0".join((user.encode(), stored, password.encode()))).digest()

    def cached(self, user: str, password: str) -> bool:
        """True when this pair already passed bcrypt: cheap, safe on the event loop."""
        key = self._key(user, password)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
        return False

    def verify(self, user: str, password: str) -> bool:
        """bcrypt check (tens of ms: run it off the event loop); remembers successes."""
        stored = self._users.get(user)
        if stored is None:
            # Same cost for unknown users, so timing does not reveal which users exist.
            if self._decoy is None:
                self._decoy = bcrypt.hashpw(b"decoy", bcrypt.gensalt(rounds=10))
            bcrypt.checkpw(password.encode(), self._decoy)
            return False
        if not bcrypt.checkpw(password.encode(), stored):
            return False
        key = self._key(user, password)
        with self._lock:
            self._cache[key] = None
            self._cache.move_to_end(key)
            while len(self._cache) > AUTH_CACHE_LIMIT:
                self._cache.popitem(last=False)
        return True


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What the web-config file asks for: TLS, basic auth, both or neither."""

    path: Path
    tls: TLSSettings | None
    auth: BasicAuth | None


def load_web_config(path: Path | str) -> WebConfig:
    """Parse and check the file, certificates and hashes; ConfigError says what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read web config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {problem}")

    for key in data:
        if key in _TOOLKIT_TOP_KEYS:
            raise fail(key, "an exporter-toolkit key Tidemark does not support; remove it")
        if key not in _TOP_KEYS:
            raise fail(key, f"unknown key; expected one of {sorted(_TOP_KEYS)}")
    base = path.resolve().parent
    tls = _parse_tls(data.get("tls_server_config"), base, fail)
    auth = _parse_users(data.get("basic_auth_users"), fail)
    return WebConfig(path=path, tls=tls, auth=auth)


def _parse_tls(raw: Any, base: Path, fail: Any) -> TLSSettings | None:
    if raw is None:
        return None
    section = "tls_server_config"
    if not isinstance(raw, dict):
        raise fail(section, "must be a mapping")
    for key in raw:
        if key in _TOOLKIT_TLS_KEYS:
            raise fail(f"{section}.{key}", "an exporter-toolkit key Tidemark does not support")
        if key not in _TLS_KEYS:
            raise fail(f"{section}.{key}", f"unknown key; expected one of {sorted(_TLS_KEYS)}")
    if not raw:
        return None

    def path_of(key: str, required: bool) -> Path | None:
        value = raw.get(key)
        if value is None or value == "":
            if required:
                raise fail(f"{section}.{key}", "required when tls_server_config is given")
            return None
        if not isinstance(value, str):
            raise fail(f"{section}.{key}", "must be a file path")
        file = base / value
        if not file.is_file():
            raise fail(f"{section}.{key}", f"{file}: no such file")
        return file

    def version(key: str, default: str) -> ssl.TLSVersion:
        value = raw.get(key, default)
        if value not in _TLS_VERSIONS:
            raise fail(f"{section}.{key}", f"{value!r} is not one of {sorted(_TLS_VERSIONS)}")
        return _TLS_VERSIONS[value]

    cert_file = path_of("cert_file", required=True)
    key_file = path_of("key_file", required=True)
    client_ca_file = path_of("client_ca_file", required=False)
    client_auth = raw.get("client_auth_type") or "NoClientCert"
    if client_auth in _UNVERIFIED_CLIENT_AUTH:
        raise fail(
            f"{section}.client_auth_type",
            f"{client_auth} accepts unverified client certificates, which Tidemark does not "
            "support; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with "
            "client_ca_file",
        )
    if client_auth not in _CLIENT_AUTH:
        raise fail(
            f"{section}.client_auth_type", f"{client_auth!r} is not one of {sorted(_CLIENT_AUTH)}"
        )
    if client_auth == "NoClientCert" and client_ca_file is not None:
        raise fail(
            f"{section}.client_ca_file",
            "client CAs are configured without a client_auth_type that verifies them",
        )
    if client_auth != "NoClientCert" and client_ca_file is None:
        raise fail(
            f"{section}.client_ca_file",
            f"client_auth_type {client_auth} needs the CA that signs client certificates",
        )
    min_version = version("min_version", "TLS12")
    max_version = version("max_version", "TLS13")
    if min_version > max_version:
        raise fail(f"{section}.min_version", "is above max_version")
    assert cert_file is not None and key_file is not None  # required above
    tls = TLSSettings(cert_file, key_file, client_ca_file, client_auth, min_version, max_version)
    try:
        tls.context()  # built now, so a broken file fails start-up, not a scrape
    except ssl.SSLError as exc:
        reason = exc.reason or exc
        raise fail(section, f"cannot use the certificate, key or client CA: {reason}") from None
    except OSError as exc:
        raise fail(section, f"cannot read {exc.filename}: {exc.strerror}") from None
    return tls


def _parse_users(raw: Any, fail: Any) -> BasicAuth | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise fail("basic_auth_users", "must be a mapping of user name to bcrypt hash")
    users: dict[str, bytes] = {}
    for user, hashed in raw.items():
        key = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            raise fail(key, "a user name must be a non-empty string without ':'")
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            # The value may be a password pasted by mistake: never echo it.
            raise fail(key, "not a bcrypt hash (generate one with `htpasswd -nBC 10 USER`)")
        users[user] = hashed.encode()
    return BasicAuth(users) if users else None

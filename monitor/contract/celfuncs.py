"""The string checks confluent-kafka adds to CEL, so registered rules that use them compile.

confluent-kafka's CEL executors (`rules/cel/extra_func.py`, from protovalidate)
add isEmail, isHostname, isIpv4, isIpv6, isUri, isUriRef and isUuid. They are
rewritten here with the same rules (the side-by-side test runs both), callable
as a function or a method: `isEmail(message.email)` and `message.email.isEmail()`.
A non-string argument is an error, as there. Its other additions (format, the
decimal, timestamp and variant functions) are not provided: rules using them do
not compile and are reported as not evaluated.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from email.utils import parseaddr
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from urllib.parse import urlparse

from cel_expr_python import cel


def _hostname(host: str) -> bool:
    if not host or len(host) > 253:
        return False
    if host[-1] == ".":
        host = host[:-1]
    all_digits = True
    for part in host.split("."):
        if not 0 < len(part) <= 63 or part[0] == "-" or part[-1] == "-":
            return False
        all_digits = True  # as Confluent: only the last label may not be all digits
        for char in part:
            if not (char.isascii() and (char.isalnum() or char == "-")):
                return False
            all_digits = all_digits and "0" <= char <= "9"
    return not all_digits


def _email(addr: str) -> bool:
    if addr != parseaddr(addr)[1] or len(addr) > 254:
        return False
    parts = addr.split("@")
    return len(parts) == 2 and len(parts[0]) <= 64 and _hostname(parts[1])


def _ip(version: int) -> Callable[[Any], bool]:
    kind = IPv4Address if version == 4 else IPv6Address

    def check(value: Any) -> bool:
        try:
            kind(bytes(value) if isinstance(value, bytearray) else value)
        except ValueError:
            return False
        return True

    return check


def _uri(value: str) -> bool:
    url = urlparse(value)
    return bool(url.scheme and url.netloc and url.path)


def _uri_ref(value: str) -> bool:
    url = urlparse(value)
    return not (not (url.scheme and url.path) and url.fragment)


def _uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_STRING_CHECKS: dict[str, Callable[[Any], bool]] = {
    "isEmail": _email,
    "isHostname": _hostname,
    "isUri": _uri,
    "isUriRef": _uri_ref,
    "isUuid": _uuid,
}
_IP_CHECKS = {"isIpv4": _ip(4), "isIpv6": _ip(6)}  # strings and bytes (packed addresses)


def declarations() -> list[Any]:
    """cel.FunctionDecl for each check, as a global function and as a string method."""
    decls = []
    for name, impl in [*_STRING_CHECKS.items(), *_IP_CHECKS.items()]:
        kinds = [cel.Type.STRING] if name in _STRING_CHECKS else [cel.Type.STRING, cel.Type.BYTES]
        overloads = []
        for kind in kinds:
            label = kind.name().lower()
            overloads.append(
                cel.Overload(f"{label}_{name}", cel.Type.BOOL, [kind], is_member=True, impl=impl)
            )
            overloads.append(cel.Overload(f"{name}_{label}", cel.Type.BOOL, [kind], impl=impl))
        decls.append(cel.FunctionDecl(name, overloads))
    return decls

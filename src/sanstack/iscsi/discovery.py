"""SendTargets discovery (RFC 7143 §13.3 SendTargets, §13.8 TargetAddress, Appendix C).

An initiator asks ``SendTargets=All`` in a Discovery session (or ``SendTargets=<name>``,
or an empty value meaning "the current target" in a Normal session) with a Text
Request; the target answers with ``TargetName=`` followed by that target's
``TargetAddress=host:port,tpgt`` lines. IPv6 hosts are written in brackets.

The response may be longer than one PDU; the connection layer splits it with the
Text Response C bit (§11.11.2).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from sanstack.errors import LocalProtocolError, RemoteProtocolError
from sanstack.iscsi.negotiation import SessionType
from sanstack.iscsi.text import encode_text, parse_text

SEND_TARGETS_ALL = "All"


class DiscoveryError(RemoteProtocolError):
    """The target's SendTargets answer is malformed or a refusal."""


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def format_target_address(host: str, port: int | None, portal_group_tag: int) -> str:
    """``host[:port],tpgt`` with an IPv6 literal in brackets (§13.8)."""
    if not 0 <= portal_group_tag <= 65535:
        raise LocalProtocolError(f"portal group tag {portal_group_tag} outside 0..65535")
    if _is_ipv6(host):
        host = f"[{host}]"
    return f"{host}:{port},{portal_group_tag}" if port is not None else f"{host},{portal_group_tag}"


def normalize_target_address(portal: str) -> str:
    """Bracket an IPv6 literal in a ``host[:port],tpgt`` string; leave anything else.

    An unbracketed ``fe80::1:3260`` is ambiguous; it is read as host ``fe80::1`` and port
    3260 because a TargetAddress nearly always carries its port. Use
    :func:`format_target_address` (or brackets) to be explicit.
    """
    address, sep, tag = portal.rpartition(",")
    if not sep:
        raise LocalProtocolError(f"portal {portal!r} lacks its ',tpgt'")
    if address.startswith("["):
        return portal
    host, colon, port = address.rpartition(":")
    if colon and port.isascii() and port.isdigit() and _is_ipv6(host):
        return f"[{host}]:{port},{tag}"
    if _is_ipv6(address):
        return f"[{address}],{tag}"
    return portal


def send_targets_response(
    request_value: str,
    targets: Sequence[tuple[str, Sequence[str]]],
    initiator_allowed: Callable[[str], bool],
    *,
    session_type: SessionType = SessionType.DISCOVERY,
    current_target: str | None = None,
) -> bytes:
    """The Text Response data answering ``SendTargets=<request_value>``.

    ``targets`` pairs each target name with its portals (``host:port,tpgt``);
    ``initiator_allowed(target_name)`` says whether the asking initiator may see a
    target (its ACL). ``All`` lists every visible target in either session type; an empty
    value is for Normal sessions only (Appendix C) and is answered ``Reject`` elsewhere. An unknown
    or hidden target yields an empty answer, so probing reveals nothing.
    """
    if request_value == SEND_TARGETS_ALL:
        # Appendix C reserves "All" for discovery sessions, but libiscsi (and so QEMU)
        # sends it in normal sessions and expects the list; answering costs nothing.
        wanted = None
    elif request_value == "":
        if session_type is not SessionType.NORMAL or current_target is None:
            return encode_text([("SendTargets", "Reject")])
        wanted = current_target.lower()
    else:
        wanted = request_value.lower()  # iSCSI names compare case-insensitively
    pairs: list[tuple[str, str]] = []
    for name, portals in targets:
        if wanted is not None and name.lower() != wanted:
            continue
        if not initiator_allowed(name):
            continue
        pairs.append(("TargetName", name))
        pairs.extend(("TargetAddress", normalize_target_address(p)) for p in portals)
    return encode_text(pairs)


def send_targets_request(value: str = SEND_TARGETS_ALL) -> bytes:
    """The Text Request data for a SendTargets query."""
    return encode_text([("SendTargets", value)])


def parse_send_targets(data: bytes) -> list[tuple[str, list[str]]]:
    """Parse a SendTargets answer into ``[(target_name, [target_address, ...])]``."""
    result: list[tuple[str, list[str]]] = []
    for key, value in parse_text(data):
        if key == "TargetName":
            if not value:
                raise DiscoveryError("empty TargetName")
            result.append((value, []))
        elif key == "TargetAddress":
            if not result:
                raise DiscoveryError("TargetAddress before any TargetName")
            result[-1][1].append(value)
        elif key == "SendTargets":
            raise DiscoveryError(f"SendTargets answered {value!r}")
        # Other keys (e.g. TargetAlias from some targets) carry nothing we need.
    return result

"""The iSCSI text format: NUL-delimited ``key=value`` pairs (RFC 7143 §6.1, §6.2).

Login and Text PDUs carry their parameters in this format. A text may be split over
several PDUs with the C (continue) bit; :class:`TextAccumulator` glues the pieces
back together with a size bound, and :func:`parse_text` parses the whole text.

The value syntaxes of §6.1 (boolean, numerical, hex/base64 binary, list) are decoded
by the helpers at the bottom; they raise :class:`InvalidValueError`, which the
negotiation layer turns into a ``Reject`` answer for that one key instead of failing
the whole login.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from sanstack.errors import LocalProtocolError, RemoteProtocolError

MAX_KEY_LENGTH = 63
"""§6.1: a key name is at most 63 bytes."""

MAX_VALUE_LENGTH = 255
"""§6.1: an individual value (each list element) is at most 255 bytes."""

MAX_LARGE_VALUE_LENGTH = 8192
"""Bound for large-binary-values; a 1024-byte CHAP_C (§12.1.3) is 2050 hex characters."""

LARGE_VALUE_KEYS = frozenset({"CHAP_C", "CHAP_R"})
"""Keys whose value is a large-binary-value (§12.1.3) and so may exceed 255 bytes."""

DEFAULT_MAX_TEXT_BYTES = 64 * 1024
"""Default bound on a text reassembled from C-bit continuations."""

RESERVED_VALUES = frozenset({"NotUnderstood", "Reject", "Irrelevant"})
"""§6.2: answers only; never a valid offer."""

# §6.1 key-name: letters, digits, '.', '-', '+', '@', '_', starting with a capital letter.
_KEY_RE = re.compile(r"[A-Z][A-Za-z0-9.\-+@_]*")
# §13.22: public extension keys are spelled X#<name>; '#' is legal only right after the X.
_EXTENSION_KEY_RE = re.compile(r"X#[A-Za-z0-9.\-+@_]+")
_DECIMAL_RE = re.compile(r"[0-9]+")
_HEX_RE = re.compile(r"0[xX]([0-9a-fA-F]+)")
_BASE64_RE = re.compile(r"0[bB]([A-Za-z0-9+/]+=*)")


class TextFormatError(RemoteProtocolError):
    """The peer sent a text that breaks the §6.1 format; the whole exchange fails."""


class TextTooLongError(TextFormatError):
    """A text reassembled from C-bit continuations exceeded the configured bound."""


class TextEncodeError(LocalProtocolError):
    """We were asked to encode a key or value the §6.1 format cannot carry."""


class InvalidValueError(RemoteProtocolError):
    """One value does not match the syntax its key requires (answered with Reject)."""


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a legal §6.1 key name, or ``None`` when it is."""
    if not key:
        return "empty key"
    if len(key.encode()) > MAX_KEY_LENGTH:
        return f"key longer than {MAX_KEY_LENGTH} bytes"
    if _KEY_RE.fullmatch(key) is None and _EXTENSION_KEY_RE.fullmatch(key) is None:
        return f"illegal key name {key!r}"
    return None


def value_problem(key: str, value: str) -> str | None:
    """Why ``value`` cannot be sent for ``key``, or ``None`` when it can."""
    if "\x00" in value:
        return "NUL inside a value"
    raw = value.encode()
    if key in LARGE_VALUE_KEYS:
        if len(raw) > MAX_LARGE_VALUE_LENGTH:
            return f"{key} value longer than {MAX_LARGE_VALUE_LENGTH} bytes"
        return None
    # The 255-byte limit is per value; a list's comma is a delimiter, not part of a value.
    if any(len(part) > MAX_VALUE_LENGTH for part in raw.split(b",")):
        return f"{key} value longer than {MAX_VALUE_LENGTH} bytes"
    return None


def parse_text(data: bytes) -> list[tuple[str, str]]:
    """Parse a complete text (all continuation PDUs concatenated) into ordered pairs.

    Every pair must end with a NUL (§6.1). Extra NULs after the last pair are
    accepted as padding; an empty pair anywhere else is an error.
    """
    if not data:
        return []
    body = data.rstrip(b"\x00")
    if len(body) == len(data):
        raise TextFormatError("text does not end with a NUL delimiter")
    pairs: list[tuple[str, str]] = []
    for raw in body.split(b"\x00"):
        try:
            item = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TextFormatError(f"text is not UTF-8: {exc}") from exc
        key, sep, value = item.partition("=")
        if not sep:
            raise TextFormatError(f"pair without '=': {item[:80]!r}")
        problem = key_problem(key) or value_problem(key, value)
        if problem is not None:
            raise TextFormatError(problem)
        pairs.append((key, value))
    return pairs


def encode_text(pairs: Iterable[tuple[str, str]]) -> bytes:
    """Encode pairs as a text, each followed by its NUL (§6.1)."""
    out = bytearray()
    for key, value in pairs:
        problem = key_problem(key) or value_problem(key, value)
        if problem is not None:
            raise TextEncodeError(problem)
        out += f"{key}={value}".encode()
        out.append(0)
    return bytes(out)


class TextAccumulator:
    """Reassembles a text sent over several PDUs with the C bit (§6.2, §11.10.2).

    ``feed`` returns ``None`` while more PDUs are announced and the whole text once
    a PDU arrives with C=0; the bound stops a peer from making us buffer forever.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self._max_bytes = max_bytes
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def pending(self) -> bool:
        """Whether a continued text is still incomplete."""
        return bool(self._parts)

    def feed(self, data: bytes, *, cont: bool) -> bytes | None:
        self._size += len(data)
        if self._size > self._max_bytes:
            self.reset()
            raise TextTooLongError(f"text longer than {self._max_bytes} bytes")
        self._parts.append(data)
        if cont:
            return None
        text = b"".join(self._parts)
        self.reset()
        return text

    def reset(self) -> None:
        self._parts.clear()
        self._size = 0


# -- value syntaxes (§6.1) ------------------------------------------------------------


def parse_boolean(value: str) -> bool:
    """A boolean-value is exactly ``Yes`` or ``No``."""
    if value == "Yes":
        return True
    if value == "No":
        return False
    raise InvalidValueError(f"not a boolean value: {value!r}")


def encode_boolean(flag: bool) -> str:
    return "Yes" if flag else "No"


def parse_numerical(value: str, minimum: int = 0, maximum: int = 2**64 - 1) -> int:
    """A numerical-value: decimal-constant or hex-constant, range-checked."""
    if _DECIMAL_RE.fullmatch(value):
        number = int(value, 10)
    elif (match := _HEX_RE.fullmatch(value)) is not None:
        number = int(match.group(1), 16)
    else:
        raise InvalidValueError(f"not a numerical value: {value!r}")
    if not minimum <= number <= maximum:
        raise InvalidValueError(f"{number} outside {minimum}..{maximum}")
    return number


def decode_binary(value: str) -> bytes:
    """A binary value in hex (``0x``) or base64 (``0b``) encoding.

    An odd number of hex digits has an implied leading zero nibble (§6.1 hex-constant).
    """
    if (match := _HEX_RE.fullmatch(value)) is not None:
        digits = match.group(1)
        if len(digits) % 2:
            digits = "0" + digits
        return bytes.fromhex(digits)
    if (match := _BASE64_RE.fullmatch(value)) is not None:
        try:
            return base64.b64decode(match.group(1), validate=True)
        except binascii.Error as exc:
            raise InvalidValueError(f"bad base64 constant: {exc}") from exc
    raise InvalidValueError(f"not a binary value: {value[:40]!r}")


def encode_binary(data: bytes, *, use_base64: bool = False) -> str:
    """Encode bytes as a hex-constant (the form every initiator parses) or base64."""
    if use_base64:
        return "0b" + base64.b64encode(data).decode("ascii")
    return "0x" + data.hex()


def split_list(value: str) -> list[str]:
    """A list-of-values: comma separated, no empty elements, no reserved answers."""
    items = value.split(",")
    if any(not item for item in items):
        raise InvalidValueError(f"empty element in list {value!r}")
    if any(item in RESERVED_VALUES for item in items):
        raise InvalidValueError(f"reserved answer inside an offer list {value!r}")
    return items

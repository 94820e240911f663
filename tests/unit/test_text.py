"""The iSCSI text key=value codec (RFC 7143 §6.1)."""

from __future__ import annotations

import pytest

from sanstack.errors import LocalProtocolError, RemoteProtocolError
from sanstack.iscsi.text import (
    InvalidValueError,
    TextAccumulator,
    TextEncodeError,
    TextFormatError,
    TextTooLongError,
    decode_binary,
    encode_binary,
    encode_text,
    parse_boolean,
    parse_numerical,
    parse_text,
    split_list,
)


def test_parse_keeps_order_and_values_with_equals_signs() -> None:
    data = b"InitiatorName=iqn.x\x00CHAP_C=0bAAEC\x00X-a=b=c\x00"
    assert parse_text(data) == [("InitiatorName", "iqn.x"), ("CHAP_C", "0bAAEC"), ("X-a", "b=c")]


def test_empty_text_and_empty_value() -> None:
    assert parse_text(b"") == []
    assert parse_text(b"TargetAlias=\x00") == [("TargetAlias", "")]


def test_round_trip() -> None:
    pairs = [("HeaderDigest", "CRC32C,None"), ("MaxBurstLength", "262144")]
    assert encode_text(pairs) == b"HeaderDigest=CRC32C,None\x00MaxBurstLength=262144\x00"
    assert parse_text(encode_text(pairs)) == pairs


def test_trailing_padding_is_accepted() -> None:
    assert parse_text(b"A=1\x00\x00\x00") == [("A", "1")]


@pytest.mark.parametrize(
    "data",
    [
        b"NoEquals\x00",
        b"A=1",  # last pair not NUL-terminated
        b"A=1\x00\x00B=2\x00",  # empty pair in the middle
        b"=value\x00",
        b"lowercase=1\x00",
        b"Bad Key=1\x00",
        b"K" * 64 + b"=1\x00",
        b"TargetAlias=" + b"a" * 256 + b"\x00",
        b"TargetAlias=\xff\xfe\x00",
        b"X#=1\x00",
    ],
)
def test_malformed_texts_raise_text_format_error(data: bytes) -> None:
    with pytest.raises(TextFormatError) as info:
        parse_text(data)
    assert isinstance(info.value, RemoteProtocolError)


def test_limits_are_per_value_and_large_keys_may_be_longer() -> None:
    assert parse_text(b"K" * 63 + b"=1\x00")[0][0] == "K" * 63
    assert parse_text(b"TargetAlias=" + b"a" * 255 + b"\x00")[0][1] == "a" * 255
    long_list = ",".join(["v" * 200] * 3).encode()
    assert parse_text(b"X-list=" + long_list + b"\x00")[0][1] == long_list.decode()
    challenge = "0x" + "ab" * 1024
    assert parse_text(encode_text([("CHAP_C", challenge)])) == [("CHAP_C", challenge)]
    with pytest.raises(TextFormatError):
        parse_text(b"CHAP_C=0x" + b"a" * 9000 + b"\x00")


def test_public_extension_key_name() -> None:
    assert parse_text(b"X#NodeArchitecture=sanstack/0.1\x00") == [
        ("X#NodeArchitecture", "sanstack/0.1")
    ]


@pytest.mark.parametrize(
    "pair", [("", "1"), ("A", "x\x00y"), ("bad", "1"), ("TargetAlias", "a" * 256)]
)
def test_encode_rejects_what_the_wire_cannot_carry(pair: tuple[str, str]) -> None:
    with pytest.raises(TextEncodeError) as info:
        encode_text([pair])
    assert isinstance(info.value, LocalProtocolError)


def test_accumulator_reassembles_continued_text() -> None:
    acc = TextAccumulator(max_bytes=100)
    assert acc.feed(b"Initiator", cont=True) is None
    assert bool(acc.pending)
    assert acc.feed(b"Name=iqn.x\x00", cont=False) == b"InitiatorName=iqn.x\x00"
    assert not acc.pending
    assert acc.feed(b"A=1\x00", cont=False) == b"A=1\x00"


def test_accumulator_bound() -> None:
    acc = TextAccumulator(max_bytes=10)
    acc.feed(b"x" * 10, cont=True)
    with pytest.raises(TextTooLongError):
        acc.feed(b"y", cont=True)
    assert not acc.pending
    with pytest.raises(ValueError):
        TextAccumulator(max_bytes=0)


def test_boolean_values_are_case_sensitive() -> None:
    assert parse_boolean("Yes") is True
    assert parse_boolean("No") is False
    for bad in ("yes", "NO", "", "1"):
        with pytest.raises(InvalidValueError):
            parse_boolean(bad)


@pytest.mark.parametrize(
    ("value", "number"), [("0", 0), ("8192", 8192), ("0x2000", 8192), ("0X10", 16), ("007", 7)]
)
def test_numerical_values(value: str, number: int) -> None:
    assert parse_numerical(value) == number


@pytest.mark.parametrize("value", ["", "-1", "+1", "1_000", " 1", "1.0", "0x", "٣", "0b01"])
def test_numerical_value_syntax_errors(value: str) -> None:
    with pytest.raises(InvalidValueError):
        parse_numerical(value)


def test_numerical_range() -> None:
    assert parse_numerical("512", 512, 1024) == 512
    with pytest.raises(InvalidValueError):
        parse_numerical("511", 512, 1024)
    with pytest.raises(InvalidValueError):
        parse_numerical(str(2**64))


def test_binary_encodings() -> None:
    assert decode_binary("0x00ff") == b"\x00\xff"
    assert decode_binary("0XaBc") == b"\x0a\xbc"  # odd digit count: implied leading zero
    assert decode_binary("0bAP8=") == b"\x00\xff"
    assert encode_binary(b"\x00\xff") == "0x00ff"
    assert encode_binary(b"\x00\xff", use_base64=True) == "0bAP8="
    for bad in ("00ff", "0x", "0xgg", "0b!!", "0bA", "abc"):
        with pytest.raises(InvalidValueError):
            decode_binary(bad)


def test_list_values() -> None:
    assert split_list("CRC32C,None") == ["CRC32C", "None"]
    for bad in ("CRC32C,", ",None", "None,,CRC32C", "Reject", "None,Irrelevant"):
        with pytest.raises(InvalidValueError):
            split_list(bad)

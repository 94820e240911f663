"""The node's reservation key: byte-exact vectors (computed with ``sha256sum`` on the
shell, independently of the code), never 0, distinct between clusters."""

from __future__ import annotations

import pytest

from sanstack.cluster import keys
from sanstack.cluster.keys import format_key, key_bytes, node_key, parse_key

# printf 'prod' | sha256sum -> 6754af96...; printf 'prod\0n1' | sha256sum -> 385e9620...
VECTORS = [
    ("prod", "n1", 0x6754AF96385E9620),
    ("prod", "n2", 0x6754AF9670AB4138),
    ("prod", "n3", 0x6754AF96FB96F994),
    ("prod", "nöde", 0x6754AF96CD03094E),  # UTF-8
    ("other", "n1", 0xD9298A107C2BF058),
    ("example", "n1", 0x50D858E0D3D00181),
]


@pytest.mark.parametrize(("cluster", "node", "key"), VECTORS)
def test_node_key_vectors(cluster: str, node: str, key: int) -> None:
    assert node_key(cluster, node) == key


def test_key_bytes_are_big_endian() -> None:
    assert key_bytes(node_key("prod", "n1")) == bytes.fromhex("6754af96385e9620")
    assert key_bytes(1) == b"\0" * 7 + b"\1"


def test_the_high_word_names_the_cluster() -> None:
    assert node_key("prod", "n1") >> 32 == node_key("prod", "n2") >> 32 == keys.cluster_word("prod")
    assert node_key("prod", "n1") >> 32 != node_key("other", "n1") >> 32


def test_the_same_node_name_in_two_clusters_has_two_keys() -> None:
    assert node_key("prod", "n1") != node_key("other", "n1")


def test_the_separator_keeps_cluster_and_node_apart() -> None:
    assert node_key("ab", "c") != node_key("a", "bc")


def test_a_low_word_of_zero_is_forced_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "_h32", lambda text: 0)
    assert node_key("prod", "n1") == 1


def test_format_and_parse_key() -> None:
    assert format_key(0x6754AF96385E9620) == "0x6754af96385e9620"
    assert format_key(1) == "0x0000000000000001"
    assert parse_key("0x6754af96385e9620") == 0x6754AF96385E9620
    assert parse_key(format_key(2**64 - 1)) == 2**64 - 1
    with pytest.raises(ValueError):
        parse_key("0x1" + "0" * 16)
    with pytest.raises(ValueError):
        parse_key("zz")

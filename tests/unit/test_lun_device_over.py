"""``ISCSIDevice.over``: the same LUN through another session, nothing read again. It
carries what ``_probe`` learnt by name (``PROBED_ATTRIBUTES``), since a compiled device
cannot be copied with ``copy.copy``; so every attribute ``_probe`` sets must be named."""

from __future__ import annotations

import ast
from typing import Any, cast

from sanstack import native
from sanstack.block.device import DeviceIdentity
from sanstack.initiator import lun_device
from sanstack.initiator.lun_device import PROBED_ATTRIBUTES, ISCSIDevice, LunSession


class Session:
    def __init__(self) -> None:
        self.parameters = None
        self.failure = None
        self.relative_target_port_id: int | None = None
        self.closed = False


def test_every_attribute_the_probe_sets_is_carried() -> None:
    # The source, not inspect's: compiled, the module has none to give.
    tree = ast.parse(native.source_path(lun_device.__name__).read_text())
    probe = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.AsyncFunctionDef) and node.name == "_probe"
    )
    assigned = {
        target.attr
        for node in ast.walk(probe)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    }
    assert assigned, "found no assignment in _probe"
    assert assigned <= set(PROBED_ATTRIBUTES), assigned - set(PROBED_ATTRIBUTES)


def test_over_carries_the_probe_and_starts_afresh() -> None:
    first, second = Session(), Session()
    device = ISCSIDevice(cast(LunSession, first), 3)
    replacement = cast(LunSession, second)
    values: dict[str, Any] = {
        "block_size": 4096,
        "num_blocks": 12345,
        "thin_provisioned": True,
        "vpd_pages": frozenset({0x00, 0x83, 0xB0}),
        "identity": DeviceIdentity.from_seed("naa:6001405abc"),
        "relative_target_port_id": 2,
        "max_transfer_blocks": 256,
        "max_unmap_blocks": 8192,
        "max_unmap_descriptors": 4,
        "unmap_supported": True,
    }
    assert set(values) == set(PROBED_ATTRIBUTES)
    for name, value in values.items():
        setattr(device, name, value)
    device.on_alua_change = lambda: None
    again = device.over(replacement)
    assert again is not device
    assert again.session is replacement and again.lun == 3
    assert {name: getattr(again, name) for name in values} == values
    assert again.on_alua_change is None
    assert second.relative_target_port_id == 2  # a session that has none learns the LUN's
    assert device.session is cast(LunSession, first)  # the original is untouched

"""Block devices: the interface and the backstores."""

from sanstack.block.device import (
    BlockDevice,
    BlockDeviceError,
    DeviceIdentity,
    DeviceNotReady,
    DeviceReadOnly,
    LBAExtent,
    MediumError,
    ProvisioningStatus,
    SpaceExhausted,
)
from sanstack.block.memory import MemoryDevice

__all__ = [
    "BlockDevice",
    "BlockDeviceError",
    "DeviceIdentity",
    "DeviceNotReady",
    "DeviceReadOnly",
    "LBAExtent",
    "MediumError",
    "MemoryDevice",
    "ProvisioningStatus",
    "SpaceExhausted",
]

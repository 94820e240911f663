"""The disk tests (WSFC: List Potential Cluster Disks, Validate SCSI device Vital Product
Data, Validate Disk Access Latency, Validate Microsoft MPIO-based disks) and ALUA."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict

from sanstack.block.device import BlockDeviceError
from sanstack.host.isids import IsidStore
from sanstack.host.sessions import SessionPool, SessionState
from sanstack.initiator.lun_device import ISCSIDevice, relative_target_port
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.path_slot import PathAddress
from sanstack.mpio.paths import PathState
from sanstack.scsi.alua_codec import (
    ALUAState,
    ReportTargetPortGroupsCdb,
    ReportTargetPortGroupsData,
)
from sanstack.scsi.inquiry import VpdPage
from sanstack.tools.fault_proxy import FaultProxy
from sanstack.validate import scsi_probe
from sanstack.validate.model import Skipped, TestRun, percentile
from sanstack.validate.nodes import LOGIN_WAIT, MAP_OPTIONS, SESSION_OPTIONS, Validation

LATENCY_SAMPLES = 64
LATENCY_SPAN_BLOCKS = 1 << 21  # the first 1 GiB of 512-byte blocks: where a file system lives
PATH_LOSS_IO = 40  # I/Os that must complete with a path away
PATH_WAIT = 30.0
_TPGS_SHIFT = 4


async def check_disks_visible(v: Validation, run: TestRun) -> None:
    """Every node logs in through every portal and reaches every LUN through each, the same
    size everywhere, one device per LUN (paths grouped by identity, never by number)."""
    for node in v.nodes:
        for shared in node.sessions:
            run.check(
                shared.state is SessionState.UP,
                f"{node.name} logged in through {shared.portal}",
                f"{node.name} cannot log in through {shared.portal} "
                f"({shared.last_failure or shared.state.value})",
            )
    for lun in v.luns:
        sizes: dict[str, tuple[int, int]] = {}
        for node in v.nodes:
            device = node.maps.get(lun)
            if device is None:
                run.fail(f"LUN {lun} is not visible to {node.name} ({node.map_errors.get(lun)})")
                continue
            for slot in device.slots:
                portal = slot.provider.name.rsplit("@", 1)[-1]
                if slot.path.state is PathState.REMOVED:
                    run.fail(
                        f"LUN {lun} through {portal} is another device than through the other "
                        f"portals: {node.name} would see two disks"
                    )
                elif slot.device is None:
                    run.fail(f"LUN {lun} is not reachable by {node.name} through {portal}")
                else:
                    run.ok(f"LUN {lun} is visible to {node.name} through {portal}")
            sizes[node.name] = (device.num_blocks, device.block_size)
        if len(set(sizes.values())) > 1:
            run.fail(f"LUN {lun} has different sizes on different nodes: {sizes}")
        elif sizes:
            blocks, size = next(iter(sizes.values()))
            run.step(f"LUN {lun}: {blocks} blocks of {size} bytes on every node")


async def check_vpd_identity(v: Validation, run: TestRun) -> None:
    """VPD page 0x83 names the same logical unit on every path of every node, and a
    different one for each LUN; the unit serial (page 0x80) agrees too."""
    owners: dict[str, list[int]] = defaultdict(list)
    for lun in v.luns:
        identities: dict[str, set[str]] = defaultdict(set)
        serials: set[str | None] = set()
        naa = True
        for node in v.nodes:
            for portal, path in node.paths(lun):
                page83 = await scsi_probe.vpd(path, VpdPage.DEVICE_IDENTIFICATION)
                found = scsi_probe.lu_designators(page83) if page83 else []
                identity = scsi_probe.identity_text(found)
                where = f"{node.name} through {portal}"
                if identity is None:
                    run.fail(
                        f"LUN {lun} has no logical unit designator in VPD page 0x83 ({where}): "
                        "nodes and multipath cannot tell it is the same disk"
                    )
                    continue
                naa = naa and identity.startswith("naa.")
                identities[identity].add(where)
                serials.add(
                    scsi_probe.unit_serial(await scsi_probe.vpd(path, VpdPage.UNIT_SERIAL_NUMBER))
                )
        if len(identities) > 1:
            run.fail(
                f"LUN {lun} reports {len(identities)} different VPD 0x83 identities "
                f"({', '.join(sorted(identities))}): the nodes would not agree it is one disk"
            )
        elif identities:
            identity = next(iter(identities))
            owners[identity].append(lun)
            run.ok(f"LUN {lun}: {identity} from every node and path")
            if not naa:
                run.warn(f"LUN {lun} has no NAA designator, only {identity.split('.')[0]}")
        if len(serials) > 1:
            run.warn(
                f"LUN {lun} reports different unit serial numbers: {sorted(map(str, serials))}"
            )
    for identity, luns in owners.items():
        if len(luns) > 1:
            run.fail(
                f"LUNs {', '.join(map(str, luns))} report the same identity {identity}: a "
                "cluster would take them for one disk"
            )
    if len(v.luns) > 1 and all(len(luns) == 1 for luns in owners.values()):
        run.ok("every LUN has an identity of its own")


async def check_alua(v: Validation, run: TestRun) -> None:
    """Where the target offers ALUA (INQUIRY TPGS): every path's port is in one reported
    group, every node reads the same states, and some group is active."""
    first = v.nodes[0].paths(v.luns[0])[0][1]
    tpgs = (await scsi_probe.standard_inquiry(first))[5] >> _TPGS_SHIFT & 0x3
    if not tpgs:
        raise Skipped(
            "the target does not offer ALUA (TPGS 0 in INQUIRY): every path is used alike"
        )
    run.step(
        f"INQUIRY TPGS={tpgs} ({'implicit' if tpgs & 1 else ''}"
        f"{' and ' if tpgs == 3 else ''}{'explicit' if tpgs & 2 else ''} ALUA)"
    )
    for lun in v.luns:
        views: dict[str, dict[int, ALUAState]] = {}
        for node in v.nodes:
            for portal, path in node.paths(lun):
                where = f"LUN {lun}: {node.name} through {portal}"
                groups = await _rtpg(path)
                if isinstance(groups, str):
                    run.fail(f"{where}: REPORT TARGET PORT GROUPS failed ({groups})")
                    continue
                page83 = await scsi_probe.vpd(path, VpdPage.DEVICE_IDENTIFICATION)
                port = relative_target_port(page83) if page83 else None
                states = {
                    g.target_port_group: g.asymmetric_access_state for g in groups.descriptors
                }
                views[where] = states
                mine = [g for g in groups.descriptors if port in g.relative_target_port_ids]
                if len(mine) == 1:
                    group = mine[0]
                    state = group.asymmetric_access_state.name.lower().replace("_", " ")
                    run.ok(f"{where}: port {port} is in group {group.target_port_group} ({state})")
                else:
                    run.fail(f"{where}: its relative target port {port} is in {len(mine)} groups")
        if len({tuple(sorted(s.items())) for s in views.values()}) > 1:
            run.fail(f"LUN {lun}: nodes read different ALUA states: {views}")
        active = {ALUAState.ACTIVE_OPTIMIZED, ALUAState.ACTIVE_NON_OPTIMIZED}
        if views and not any(active & set(s.values()) for s in views.values()):
            run.fail(f"LUN {lun}: no target port group is active: no path can do I/O")


async def _rtpg(path: ISCSIDevice) -> ReportTargetPortGroupsData | str:
    cdb = ReportTargetPortGroupsCdb(allocation_length=4096).encode()
    try:
        result = await path.execute(cdb, read_length=4096, write=False)
        return ReportTargetPortGroupsData.decode(result.data)
    except BlockDeviceError as exc:
        return scsi_probe.describe(exc).text
    except ValueError as exc:
        return f"unreadable answer: {exc}"


async def check_latency(v: Validation, run: TestRun) -> None:
    """Read (and, with --destructive, write back) single blocks at random through each
    node's multipath device; warn when the 99th percentile is over the threshold."""
    limit = v.settings.latency_warning_ms
    rng = random.Random(0x5A5)
    for lun in v.luns:
        for node in v.nodes:
            device = node.map(lun)
            span = min(device.num_blocks, LATENCY_SPAN_BLOCKS)
            reads: list[float] = []
            writes: list[float] = []
            for _ in range(LATENCY_SAMPLES):
                lba = rng.randrange(span)
                started = v.now()
                data = bytes(await device.read(lba, 1))
                reads.append((v.now() - started) * 1000)
                if v.settings.destructive:
                    started = v.now()
                    await device.write(lba, data)
                    writes.append((v.now() - started) * 1000)
            for what, samples in (("reads", reads), ("writes", writes)):
                if not samples:
                    continue
                p50, p99 = percentile(samples, 50), percentile(samples, 99)
                text = (
                    f"LUN {lun}: {what} by {node.name}: median {p50:.1f} ms, 99th percentile "
                    f"{p99:.1f} ms, slowest {max(samples):.1f} ms ({len(samples)} I/Os)"
                )
                if p99 > limit:
                    run.warn(
                        f"{text}: over {limit:g} ms; slow disks make cluster resources time "
                        "out and fail over needlessly"
                    )
                else:
                    run.ok(text)
        if not v.settings.destructive:
            run.step(f"LUN {lun}: write latency not measured (it needs --destructive)")


async def check_multipath(v: Validation, run: TestRun) -> None:
    """A node of its own reaches the LUNs through a fault proxy per portal; each path in
    turn is taken away (its port shut) while I/O runs: I/O goes on through the others
    without an error, and the path is used again once it returns."""
    proxies = [FaultProxy(a.host, a.port) for a in v.addresses]
    for proxy in proxies:
        await proxy.start()
    initiator = f"{v.initiator_base}-multipath"
    pool = SessionPool(initiator, IsidStore(None), SESSION_OPTIONS)
    devices: list[MultipathDevice] = []
    try:
        sessions = [
            pool.session(v.target, PathAddress(p.listen_host, p.listen_port)) for p in proxies
        ]
        await asyncio.gather(*(s.wait_up(LOGIN_WAIT) for s in sessions))
        for lun in v.luns:
            devices.append(
                await MultipathDevice.over(
                    [(s, lun) for s in sessions], MAP_OPTIONS, target_name=v.target, lun=lun
                )
            )
        for index, (address, proxy) in enumerate(zip(v.addresses, proxies, strict=True)):
            await _lose_path(v, run, devices, index=index, portal=str(address), proxy=proxy)
    finally:
        for device in devices:
            await device.close()
        await pool.close()
        for proxy in proxies:
            await proxy.close()


async def _lose_path(
    v: Validation,
    run: TestRun,
    devices: list[MultipathDevice],
    *,
    index: int,
    portal: str,
    proxy: FaultProxy,
) -> None:
    proxy.down()
    run.step(f"the path through {portal} is taken away (its port shut)")
    try:
        for device in devices:
            done = await _io(v, device, PATH_LOSS_IO)
            if isinstance(done, str):
                run.fail(
                    f"LUN {device.lun}: I/O failed with the path through {portal} away "
                    f"({done}): multipath did not fail over"
                )
            else:
                run.ok(f"LUN {device.lun}: {done} I/Os completed with {portal} away")
            run.check(
                device.slots[index].path.state is PathState.FAILED,
                f"LUN {device.lun}: the path through {portal} is seen failed",
                f"LUN {device.lun}: the path through {portal} is not seen failed",
            )
    finally:
        proxy.up()
    for device in devices:
        back = await _path_back(v, device, index)
        run.check(
            back,
            f"LUN {device.lun}: the path through {portal} is used again after it returned",
            f"LUN {device.lun}: the path through {portal} did not return within {PATH_WAIT:g} s",
        )


async def _io(v: Validation, device: MultipathDevice, count: int) -> int | str:
    """``count`` single-block I/Os (reads; rewrites of what was read with --destructive)."""
    try:
        for n in range(count):
            data = await device.read(n, 1)
            if v.settings.destructive:
                await device.write(n, data)
    except BlockDeviceError as exc:
        return str(exc) or type(exc).__name__
    return count


async def _path_back(v: Validation, device: MultipathDevice, index: int) -> bool:
    deadline = v.now() + PATH_WAIT
    while v.now() < deadline:
        if device.slots[index].path.state is PathState.ACTIVE:
            return True
        with contextlib.suppress(BlockDeviceError):
            await device.read(0, 1)  # the checker reinstates it; I/O keeps the map busy
        await asyncio.sleep(0.2)
    return False

"""The SCSI-3 persistent reservation tests (WSFC: Validate SCSI-3 Persistent Reservation).

Each test starts from a clean LUN (the runner cleans every LUN before and after it) and
sends its commands down each path of each node itself, so a path that behaves differently
from the others is named. Writes are probed with a zero-block WRITE (``scsi_probe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections import Counter

from sanstack.cluster.keys import format_key
from sanstack.host.isids import IsidStore
from sanstack.initiator.lun_device import ISCSIDevice
from sanstack.initiator.session import ISCSISession, PathFailed
from sanstack.scsi.pr_codec import PROutServiceAction, PRType
from sanstack.validate import scsi_probe
from sanstack.validate.model import Skipped, TestRun
from sanstack.validate.nodes import PR_BOUND, Node, Validation

REGISTER = PROutServiceAction.REGISTER
REGISTER_IGNORE = PROutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY
WERO = PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
RESTART_TIMEOUT = 120.0
RELOGIN_WAIT = 60.0

PREEMPT_AND_ABORT_MISSING = (
    "PREEMPT AND ABORT is not supported ({answer}): fence_scsi, fence_mpath and sanstack's "
    "cluster cannot fence a node on this target"
)


def _pr_error(exc: BaseException) -> str:
    return scsi_probe.describe(exc).text


# -- REGISTER --------------------------------------------------------------------------------


async def check_register(v: Validation, run: TestRun) -> None:
    """REGISTER and REGISTER AND IGNORE EXISTING KEY from every node on every path; READ
    KEYS lists one registration per I_T nexus; REGISTER with key 0 unregisters."""
    for lun in v.luns:
        expected: Counter[int] = Counter()
        for node in v.nodes:
            for portal, path in node.paths(lun):
                where = f"LUN {lun}: {node.name} through {portal}"
                answer = await scsi_probe.prout(path, REGISTER, sa_key=node.key)
                run.check(
                    answer.good,
                    f"{where}: REGISTER {format_key(node.key)}",
                    f"{where}: REGISTER of a new key was refused ({answer.text})",
                )
                answer = await scsi_probe.prout(path, REGISTER_IGNORE, sa_key=node.key)
                run.check(
                    answer.good,
                    f"{where}: REGISTER AND IGNORE EXISTING KEY",
                    f"{where}: REGISTER AND IGNORE EXISTING KEY was refused ({answer.text}): "
                    "fence_scsi and the cluster register with it",
                )
                expected[node.key] += 1
        first = v.nodes[0].paths(lun)[0][1]
        seen = Counter((await scsi_probe.read_keys(first)).reservation_keys)
        per_node = {n.name: seen[n.key] for n in v.nodes}
        if seen == expected:
            run.ok(f"LUN {lun}: READ KEYS lists one registration per node and path {per_node}")
        elif set(seen) == set(expected):
            run.fail(
                f"LUN {lun}: READ KEYS lists {sum(seen.values())} registrations for "
                f"{sum(expected.values())} I_T nexuses {per_node}: registrations are not "
                "kept per path, so fencing one path of a node leaves the others"
            )
        else:
            missing = [n.name for n in v.nodes if not seen[n.key]]
            run.fail(f"LUN {lun}: READ KEYS does not list the keys of {', '.join(missing)}")
        for node in v.nodes:
            for portal, path in node.paths(lun):
                answer = await scsi_probe.prout(path, REGISTER, key=node.key, sa_key=0)
                run.check(
                    answer.good,
                    f"LUN {lun}: {node.name} through {portal}: unregistered (REGISTER key 0)",
                    f"LUN {lun}: {node.name} could not unregister through {portal} ({answer.text})",
                )
        left = (await scsi_probe.read_keys(first)).reservation_keys
        run.check(
            not left,
            f"LUN {lun}: no registration left after every path unregistered",
            f"LUN {lun}: {len(left)} registrations are left after every path unregistered",
        )


# -- READ KEYS / READ RESERVATION ------------------------------------------------------------


async def check_read_consistency(v: Validation, run: TestRun) -> None:
    """Every node registered and node 1 reserved: every node on every path reads the same
    keys, the same reservation and the same PRgeneration."""
    for lun in v.luns:
        await v.register_all(lun)
        holder = v.nodes[0]
        await asyncio.wait_for(holder.map(lun).pr_reserve(WERO), PR_BOUND)
        run.step(f"LUN {lun}: every node registered on every path; {holder.name} reserved it")
        views: dict[str, tuple[object, ...]] = {}
        for node in v.nodes:
            for portal, path in node.paths(lun):
                keys = await scsi_probe.read_keys(path)
                reservation = await scsi_probe.read_reservation(path)
                views[f"{node.name} through {portal}"] = (
                    tuple(sorted(keys.reservation_keys)),
                    keys.prgeneration,
                    reservation.reservation_key if reservation.pr_type is not None else None,
                    reservation.pr_type,
                )
        reference_name, reference = next(iter(views.items()))
        differ = [name for name, view in views.items() if view != reference]
        run.check(
            not differ,
            f"LUN {lun}: {len(views)} paths read the same keys, reservation and generation",
            f"LUN {lun}: {', '.join(differ)} read other keys or another reservation than "
            f"{reference_name}: nodes would disagree on who owns the disk",
        )
        keys_read, _, held_by, pr_type = reference
        run.check(
            held_by == holder.key and pr_type == WERO,
            f"LUN {lun}: READ RESERVATION shows {holder.name}'s write exclusive, registrants "
            "only reservation",
            f"LUN {lun}: READ RESERVATION shows key {held_by!r} type {pr_type!r}, not "
            f"{holder.name}'s {format_key(holder.key)} type 5",
        )
        missing = [n.name for n in v.nodes if n.key not in keys_read]  # type: ignore[operator]
        run.check(
            not missing,
            f"LUN {lun}: READ KEYS lists every node",
            f"LUN {lun}: READ KEYS misses {', '.join(missing)}",
        )


# -- RESERVE of each type --------------------------------------------------------------------

# The types clustered software reserves with, and who depends on each.
CLUSTER_TYPES: tuple[tuple[PRType, str, bool], ...] = (
    (WERO, "sanstack's cluster, fence_scsi, fence_mpath, Veritas and OpenSVC", True),
    (PRType.WRITE_EXCLUSIVE, "the sg_persist resource agent and lvmpersist (local VGs)", False),
    (PRType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, "lvmpersist (shared VGs)", False),
)


async def check_reserve_types(v: Validation, run: TestRun) -> None:
    """For each type: RESERVE, READ RESERVATION, who may write and read, RELEASE."""
    for lun in v.luns:
        for pr_type, users, required in CLUSTER_TYPES:
            await v.clean(lun)
            await _reserve_type(v, run, lun, pr_type, users=users, required=required)


async def _reserve_type(
    v: Validation, run: TestRun, lun: int, pr_type: PRType, *, users: str, required: bool
) -> None:
    finding = run.fail if required else run.warn
    name = f"LUN {lun}: type {int(pr_type)} ({pr_type.name.replace('_', ' ').lower()})"
    await v.register_all(lun)
    holder, others = v.nodes[0], v.nodes[1:]
    try:
        await asyncio.wait_for(holder.map(lun).pr_reserve(pr_type), PR_BOUND)
    except Exception as exc:
        finding(f"{name}: RESERVE was refused ({_pr_error(exc)}); {users} need it")
        return
    reservation = await scsi_probe.read_reservation(holder.paths(lun)[0][1])
    expected_key = 0 if pr_type.all_registrants else holder.key
    if not run.check(
        reservation.pr_type == pr_type and reservation.reservation_key == expected_key,
        f"{name}: reserved by {holder.name}, READ RESERVATION agrees",
        f"{name}: READ RESERVATION shows type {reservation.pr_type!r} key "
        f"{reservation.reservation_key:#x}",
    ):
        return
    try:
        await asyncio.wait_for(holder.map(lun).pr_reserve(pr_type), PR_BOUND)
        run.ok(f"{name}: RESERVE again by the holder is GOOD")
    except Exception as exc:
        finding(f"{name}: the holder's second RESERVE failed ({_pr_error(exc)})")
    for other in others:
        may_write = pr_type is not PRType.WRITE_EXCLUSIVE
        for portal, path in other.paths(lun):
            where = f"{name}: registered {other.name} through {portal}"
            answer = await scsi_probe.may_write(path)
            expected = "may write" if may_write else "may not write"
            if answer.good == may_write and (answer.good or answer.conflict):
                run.ok(f"{where} {expected}")
            else:
                finding(f"{where} should be told it {expected}, got {answer.text}")
            read = await scsi_probe.may_read(path)
            if not read.good:
                finding(f"{where} cannot read ({read.text}): every type lets others read")
        if pr_type is not PRType.WRITE_EXCLUSIVE:
            await asyncio.wait_for(other.map(lun).pr_register(0), PR_BOUND)
            for portal, path in other.paths(lun):
                answer = await scsi_probe.may_write(path)
                if answer.conflict:
                    run.ok(f"{name}: unregistered {other.name} through {portal} may not write")
                else:
                    finding(
                        f"{name}: {other.name} may still write through {portal} after it "
                        f"unregistered ({answer.text}): a fenced node would corrupt the disk"
                    )
    try:
        await asyncio.wait_for(holder.map(lun).pr_release(pr_type), PR_BOUND)
    except Exception as exc:
        finding(f"{name}: RELEASE by the holder failed ({_pr_error(exc)})")
        return
    after = await scsi_probe.read_reservation(holder.paths(lun)[0][1])
    run.check(
        after.pr_type is None,
        f"{name}: released",
        f"{name}: still reserved after the holder's RELEASE",
    )


# -- RELEASE and CLEAR -----------------------------------------------------------------------


async def check_release(v: Validation, run: TestRun) -> None:
    """A registrant that does not hold the reservation RELEASEs: GOOD and nothing happens
    (SPC-4 §5.13.11.2.2); the holder RELEASEs: no reservation, every key still there."""
    for lun in v.luns:
        await v.register_all(lun)
        holder, others = v.nodes[0], v.nodes[1:]
        await asyncio.wait_for(holder.map(lun).pr_reserve(WERO), PR_BOUND)
        probe = holder.paths(lun)[0][1]
        for other in others:
            try:
                await asyncio.wait_for(other.map(lun).pr_release(WERO), PR_BOUND)
                run.ok(f"LUN {lun}: RELEASE by {other.name}, which does not hold it, is GOOD")
            except Exception as exc:
                run.fail(
                    f"LUN {lun}: RELEASE by a registrant that does not hold the reservation "
                    f"failed ({_pr_error(exc)}); SPC-4 says GOOD without effect"
                )
            held = await scsi_probe.read_reservation(probe)
            run.check(
                held.reservation_key == holder.key and held.pr_type == WERO,
                f"LUN {lun}: {holder.name} still holds it",
                f"LUN {lun}: {other.name}'s RELEASE released {holder.name}'s reservation",
            )
        try:
            await asyncio.wait_for(holder.map(lun).pr_release(WERO), PR_BOUND)
        except Exception as exc:
            run.fail(f"LUN {lun}: the holder's RELEASE failed ({_pr_error(exc)})")
            continue
        held = await scsi_probe.read_reservation(probe)
        keys = (await scsi_probe.read_keys(probe)).reservation_keys
        run.check(
            held.pr_type is None,
            f"LUN {lun}: RELEASE by {holder.name} left no reservation",
            f"LUN {lun}: still reserved after {holder.name}'s RELEASE",
        )
        run.check(
            all(n.key in keys for n in v.nodes),
            f"LUN {lun}: every registration is still there after RELEASE",
            f"LUN {lun}: RELEASE removed registrations: nodes would have to register again",
        )


async def check_clear(v: Validation, run: TestRun) -> None:
    """Another node CLEARs while node 1 holds the disk: no key, no reservation; the keys
    gone, the old key's PR commands conflict."""
    for lun in v.luns:
        if len(v.nodes) < 2:
            raise Skipped("CLEAR by another node needs two nodes")
        await v.register_all(lun)
        holder, clearer = v.nodes[0], v.nodes[1]
        await asyncio.wait_for(holder.map(lun).pr_reserve(WERO), PR_BOUND)
        try:
            await asyncio.wait_for(clearer.map(lun).pr_clear(), PR_BOUND)
        except Exception as exc:
            run.fail(f"LUN {lun}: CLEAR was refused ({_pr_error(exc)})")
            continue
        holder.map(lun).registration.cleared()
        probe = holder.paths(lun)[0][1]
        keys = (await scsi_probe.read_keys(probe)).reservation_keys
        held = await scsi_probe.read_reservation(probe)
        run.check(
            not keys and held.pr_type is None,
            f"LUN {lun}: CLEAR by {clearer.name} removed every key and the reservation",
            f"LUN {lun}: after CLEAR {len(keys)} keys and "
            f"{'a' if held.pr_type is not None else 'no'} reservation are left",
        )
        for portal, path in holder.paths(lun):
            answer = await scsi_probe.prout(
                path, PROutServiceAction.RESERVE, key=holder.key, pr_type=WERO
            )
            run.check(
                answer.conflict,
                f"LUN {lun}: {holder.name}'s cleared key is refused through {portal}",
                f"LUN {lun}: {holder.name} could still RESERVE with its cleared key through "
                f"{portal} ({answer.text})",
            )


# -- PREEMPT and PREEMPT AND ABORT -----------------------------------------------------------


async def check_preempt(v: Validation, run: TestRun) -> None:
    await _preempt(v, run, abort=False)


async def check_preempt_abort(v: Validation, run: TestRun) -> None:
    await _preempt(v, run, abort=True)


async def _preempt(v: Validation, run: TestRun, *, abort: bool) -> None:
    """Node 1 holds the disk; node 2 preempts its key: node 2 holds it, node 1's key is
    gone from every path, its writes conflict on every path and its reads still work."""
    what = "PREEMPT AND ABORT" if abort else "PREEMPT"
    for lun in v.luns:
        await v.register_all(lun)
        victim, fencer = v.nodes[0], v.nodes[1]
        await asyncio.wait_for(victim.map(lun).pr_reserve(WERO), PR_BOUND)
        run.step(f"LUN {lun}: {victim.name} holds the disk, {fencer.name} is registered")
        try:
            await asyncio.wait_for(
                fencer.map(lun).pr_preempt(victim.key, WERO, abort=abort), PR_BOUND
            )
        except Exception as exc:
            refusal = _pr_error(exc)
            if abort:
                run.fail(PREEMPT_AND_ABORT_MISSING.format(answer=refusal))
            else:
                run.fail(f"PREEMPT is not supported ({refusal}): no node can take a disk over")
            continue
        victim.map(lun).registration.lost()
        run.ok(f"LUN {lun}: {fencer.name} sent {what} of {victim.name}'s key")
        probe = fencer.paths(lun)[0][1]
        keys = (await scsi_probe.read_keys(probe)).reservation_keys
        held = await scsi_probe.read_reservation(probe)
        run.check(
            victim.key not in keys,
            f"LUN {lun}: {victim.name}'s key is gone from every path",
            f"LUN {lun}: {victim.name}'s key is still registered on "
            f"{keys.count(victim.key)} paths after {what}",
        )
        run.check(
            held.reservation_key == fencer.key and held.pr_type == WERO,
            f"LUN {lun}: {fencer.name} holds the reservation now",
            f"LUN {lun}: after {what} the reservation is {held.reservation_key:#x} type "
            f"{held.pr_type!r}, not {fencer.name}'s",
        )
        for portal, path in victim.paths(lun):
            answer = await scsi_probe.may_write(path)
            run.check(
                answer.conflict,
                f"LUN {lun}: the fenced {victim.name}'s write conflicts through {portal}",
                f"LUN {lun}: the fenced {victim.name} can still write through {portal} "
                f"({answer.text}): a fenced node would corrupt the disk",
            )
            read = await scsi_probe.may_read(path)
            run.check(
                read.good,
                f"LUN {lun}: the fenced {victim.name} still reads through {portal}",
                f"LUN {lun}: the fenced {victim.name} cannot read through {portal} "
                f"({read.text}): write exclusive must let it read",
            )
        for portal, path in fencer.paths(lun):
            answer = await scsi_probe.may_write(path)
            run.check(
                answer.good,
                f"LUN {lun}: {fencer.name} writes through {portal}",
                f"LUN {lun}: {fencer.name} cannot write through {portal} ({answer.text})",
            )


# -- registrations over a reconnect ----------------------------------------------------------


async def check_reconnect(v: Validation, run: TestRun) -> None:
    """A probe initiator registers through every portal, its sessions drop (as a path does
    when a cable is pulled) and log in again with the same ISID, then it logs out and in
    again: its registration must still be on each nexus both times (RFC 7143: the same
    initiator name and ISID are the same I_T nexus). tgt ties them to the session."""
    initiator = f"{v.initiator_base}-reconnect"
    key = v.key_of("reconnect")
    isids = IsidStore(None)
    portals = {str(a): isids.isid(initiator, v.target, str(a)) for a in v.addresses}

    async def login(portal: str) -> ISCSISession:
        host, port = portal.rsplit(":", 1)
        return await ISCSISession.connect(
            host, int(port), v.target, initiator_name=initiator, isid=portals[portal],
            nop_interval=None, command_timeout=PR_BOUND,
        )  # fmt: skip

    sessions = {p: await login(p) for p in portals}
    try:
        for lun in v.luns:
            for portal, session in sessions.items():
                answer = await scsi_probe.prout(
                    ISCSIDevice(session, lun), REGISTER_IGNORE, sa_key=key
                )
                run.check(
                    answer.good,
                    f"LUN {lun}: registered through {portal} (ISID {portals[portal]:#014x})",
                    f"LUN {lun}: REGISTER through {portal} was refused ({answer.text})",
                )
        lost: list[str] = []
        for how in ("dropped", "logged out"):
            for portal, session in sessions.items():
                if how == "dropped":
                    session.abort("validation: path taken away")
                else:
                    await session.logout()
                sessions[portal] = await login(portal)
            run.step(f"every session {how} and logged in again with the same ISID")
            for lun in v.luns:
                for portal, session in sessions.items():
                    device = ISCSIDevice(session, lun)
                    answer = await scsi_probe.prout(device, REGISTER, key=key, sa_key=key)
                    where = f"LUN {lun} through {portal}"
                    if answer.good:
                        run.ok(f"{where}: the registration survived a session {how}")
                    elif answer.conflict:
                        run.step(f"{where}: the registration is gone after the session {how}")
                        lost.append(how)
                        await scsi_probe.prout(device, REGISTER_IGNORE, sa_key=key)
                    else:
                        run.fail(f"{where}: re-registering the same key failed ({answer.text})")
        if lost:
            run.fail(
                "registrations are tied to the session: they are lost when a session is "
                f"{' or '.join(dict.fromkeys(lost))} and logs in again with the same ISID "
                "(the same I_T nexus); after a path blip a node holds no key on that path, "
                "its writes there conflict, and fencing by key no longer covers it"
            )
    finally:
        for lun in v.luns:
            for session in sessions.values():
                with contextlib.suppress(PathFailed):
                    await scsi_probe.prout(ISCSIDevice(session, lun), REGISTER_IGNORE, sa_key=0)
        for session in sessions.values():
            await session.logout()


# -- APTPL -----------------------------------------------------------------------------------


async def check_aptpl(v: Validation, run: TestRun) -> None:
    """Registrations with APTPL survive a target restart (only with --allow-target-restart:
    the validator runs the command given); a target that refuses APTPL is a warning."""
    first = v.nodes[0]
    lun = v.luns[0]
    path = first.paths(lun)[0][1]
    caps = await scsi_probe.report_capabilities(path)
    if isinstance(caps, scsi_probe.Answer):
        run.step(f"REPORT CAPABILITIES refused ({caps.text})")
    else:
        run.step(f"REPORT CAPABILITIES: PTPL_C={int(caps.ptpl_c)} PTPL_A={int(caps.ptpl_a)}")
    answer = await scsi_probe.prout(path, REGISTER_IGNORE, sa_key=first.key, aptpl=True)
    if not answer.good:
        run.warn(
            f"the target refuses APTPL ({answer.text}): registrations and the reservation are "
            "lost when the target restarts; every node must register again after a target "
            "restart, and until it has no node can be fenced"
        )
        return
    run.ok("REGISTER with APTPL (activate persist through power loss) is accepted")
    command = v.settings.target_restart
    if command is None:
        raise Skipped(
            "the target accepts APTPL; whether registrations survive a restart is known only "
            "after one: run with --allow-target-restart COMMAND"
        )
    for node in v.nodes:
        await asyncio.wait_for(node.map(lun).pr_register(node.key, aptpl=True), PR_BOUND)
    await asyncio.wait_for(first.map(lun).pr_reserve(WERO), PR_BOUND)
    before = {id(s): s.logins for node in v.nodes for s in node.sessions}
    run.step(f"every node registered with APTPL, {first.name} reserved; running {command!r}")
    if not await _restart(run, command):
        return
    await _wait_relogin(v, before)
    probe = first.paths(lun)[0][1]
    keys = (await scsi_probe.read_keys(probe)).reservation_keys
    held = await scsi_probe.read_reservation(probe)
    lost = [n.name for n in v.nodes if n.key not in keys]
    run.check(
        not lost,
        "every node's key survived the target restart",
        f"the keys of {', '.join(lost)} were lost over the target restart although APTPL "
        "was set: after a power loss no node can be fenced until all register again",
    )
    run.check(
        held.reservation_key == first.key and held.pr_type == WERO,
        "the reservation survived the target restart",
        "the reservation was lost over the target restart although APTPL was set",
    )


async def _restart(run: TestRun, command: str) -> bool:
    """Run the restart command to its end (its output is not kept: a target it starts in
    the background may hold any pipe open for as long as it runs)."""
    process = await asyncio.create_subprocess_exec(
        *shlex.split(command),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(RESTART_TIMEOUT):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        run.fail(f"the restart command did not finish within {RESTART_TIMEOUT:g} s")
        return False
    if process.returncode != 0:
        run.fail(f"the restart command exited {process.returncode}")
        return False
    run.step("the restart command finished")
    return True


async def _wait_relogin(v: Validation, before: dict[int, int]) -> None:
    """Every node's sessions logged in again after the restart (their supervisors do it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RELOGIN_WAIT
    sessions = [s for node in v.nodes for s in node.sessions]
    for shared in sessions:
        while shared.logins <= before[id(shared)] or shared.session is None:
            if loop.time() > deadline:
                raise TimeoutError(f"{shared.name} did not log in again after the restart")
            await shared.wait_up(1.0)
            await asyncio.sleep(0.05)
    for node in v.nodes:
        for device in node.maps.values():
            while not node_paths_up(node, device.lun):
                if loop.time() > deadline:
                    raise TimeoutError(f"{node.name}: LUN {device.lun}'s paths did not return")
                await asyncio.sleep(0.1)


def node_paths_up(node: Node, lun: int) -> bool:
    return all(slot.device is not None for slot in node.map(lun).slots)

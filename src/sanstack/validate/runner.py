"""Running the suite: the safety check first, then each test of the catalogue, bounded, with
the LUNs' reservations cleaned before and after every test that changes them, and the LUNs
put back as they were at the end.

Safety (WSFC skips disks in use, KB 2488012): before anything is sent that changes a LUN,
node 1 reads its keys and reservation; a LUN that carries any (another initiator's: ours
are drawn at random for this run) means something uses it, and the run is refused, having
changed nothing, unless ``--force``. Data is written only with ``--destructive``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sanstack.block.device import BlockDeviceError
from sanstack.cluster.keys import format_key
from sanstack.validate import scsi_probe
from sanstack.validate.catalogue import TestSpec, missing_need, select
from sanstack.validate.model import Outcome, Report, RunSettings, Skipped, Step, TestResult, TestRun
from sanstack.validate.nodes import Validation

log = logging.getLogger(__name__)

TEST_TIMEOUT = 300.0
CLEAN_TIMEOUT = 30.0


async def validate(
    settings: RunSettings, *, initiator_base: str, only: list[str] | None = None
) -> Report:
    """Run the suite (or the tests named in ``only``) and return the report."""
    specs = select(only)
    report = Report(settings, datetime.now(UTC).isoformat(timespec="seconds"))
    v = Validation(settings, initiator_base)
    await v.open_nodes()
    try:
        foreign = await foreign_state(v)
        if foreign:
            if not settings.force:
                report.refused = (
                    f"{'; '.join(foreign)}. Something else uses these disks; the tests would "
                    "remove its registrations. Nothing was changed. Stop what uses them, or "
                    "run with --force"
                )
                return report
            report.restore.append(
                Step(f"--force: testing anyway; lost for good: {'; '.join(foreign)}")
            )
        for spec in specs:
            result = await run_one(v, spec)
            log.info("%s: %s %s", spec.test_id, result.outcome.value, result.reason)
            report.results.append(result)
        await restore(v, report, had_foreign=bool(foreign))
    finally:
        await v.close()
    return report


async def foreign_state(v: Validation) -> list[str]:
    """What LUNs carry before we touched them: registrations and reservations (read only)."""
    found = []
    for lun in v.luns:
        for node in v.nodes:
            paths = node.paths(lun) if lun in node.maps else []
            if paths:
                break
        else:
            continue  # nobody reaches it: disks-visible says so
        path = paths[0][1]
        keys = (await scsi_probe.read_keys(path)).reservation_keys
        reservation = await scsi_probe.read_reservation(path)
        what = []
        if keys:
            shown = ", ".join(format_key(k) for k in sorted(set(keys)))
            what.append(f"{len(keys)} registration{'s' if len(keys) > 1 else ''} ({shown})")
        if reservation.pr_type is not None:
            what.append(
                f"a type {int(reservation.pr_type)} reservation of "
                f"{format_key(reservation.reservation_key)}"
            )
        if what:
            found.append(f"LUN {lun} carries {' and '.join(what)} we did not make")
    return found


async def run_one(v: Validation, spec: TestSpec) -> TestResult:
    run = TestRun(spec.test_id)
    need = missing_need(spec.needs, v.settings)
    if need is not None:
        return run.skipped(spec.title, spec.wsfc, f"skipped: {need.value}", 0.0)
    started = v.now()
    if spec.touches_pr:
        await _clean_all(v, run, "before the test")
    try:
        async with asyncio.timeout(TEST_TIMEOUT):
            await spec.run(v, run)
    except Skipped as exc:
        result = run.skipped(spec.title, spec.wsfc, str(exc), v.now() - started)
    except (BlockDeviceError, TimeoutError, OSError) as exc:
        text = str(exc) or f"no answer within the test's bound ({type(exc).__name__})"
        result = run.crashed(spec.title, spec.wsfc, text, v.now() - started)
    else:
        result = run.result(spec.title, spec.wsfc, v.now() - started)
    if spec.touches_pr:
        after = TestRun(spec.test_id)
        await _clean_all(v, after, "after the test")
        if after.findings(Outcome.FAIL):
            steps = (*result.steps, *after.steps)
            result = TestRun(spec.test_id, list(steps)).result(
                spec.title, spec.wsfc, result.seconds
            )
    return result


async def _clean_all(v: Validation, run: TestRun, when: str) -> None:
    for lun in v.luns:
        try:
            async with asyncio.timeout(CLEAN_TIMEOUT):
                left = await v.clean(lun)
        except (BlockDeviceError, TimeoutError, OSError) as exc:
            run.fail(f"LUN {lun}: could not clean our reservations {when} ({exc})")
            continue
        if left:
            run.fail(f"LUN {lun}: {', '.join(left)} could not be removed {when}")


async def restore(v: Validation, report: Report, *, had_foreign: bool) -> None:
    """Our keys and reservations off every LUN; without --force the LUNs were bare before,
    so they must be bare again."""
    for lun in v.luns:
        try:
            async with asyncio.timeout(CLEAN_TIMEOUT):
                left = await v.clean(lun)
                path = next(p for n in v.nodes if lun in n.maps for _, p in n.paths(lun))
                keys = (await scsi_probe.read_keys(path)).reservation_keys
                held = await scsi_probe.read_reservation(path)
        except (BlockDeviceError, TimeoutError, OSError, StopIteration) as exc:
            report.restore.append(Step(f"LUN {lun}: could not be checked ({exc})", Outcome.FAIL))
            continue
        if left:
            report.restore.append(Step(f"LUN {lun}: {', '.join(left)} left", Outcome.FAIL))
        elif not had_foreign and (keys or held.pr_type is not None):
            report.restore.append(
                Step(f"LUN {lun}: {len(keys)} registrations are left", Outcome.FAIL)
            )
        else:
            report.restore.append(
                Step(f"LUN {lun}: no registration or reservation of ours left", Outcome.PASS)
            )

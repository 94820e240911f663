"""The device server's command table: SPC-4 commands plus SBC-4 commands."""

from __future__ import annotations

from sanstack.scsi.command import CommandSpec


def command_table() -> dict[tuple[int, int | None], CommandSpec]:
    """Every served command keyed by (opcode, service action or None)."""
    from sanstack.scsi import alua, pr_commands, sbc, spc

    table: dict[tuple[int, int | None], CommandSpec] = {}
    for spec in (*spc.COMMANDS, *sbc.COMMANDS, *alua.COMMANDS, *pr_commands.COMMANDS):
        key = (spec.opcode, spec.service_action)
        if key in table:
            raise RuntimeError(f"command {spec.name} is defined twice")
        table[key] = spec
    return table

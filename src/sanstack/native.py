"""The modules compiled with mypyc, and whether this process uses them (ARCHITECTURE.md).

``scripts/build-native`` compiles :data:`COMPILED_MODULES` into extension modules next to
their ``.py`` files (one shared library for all: ``sanstack/native_group__mypyc*.so``) and
then writes a stamp: mypy's and Python's versions, the list, and the size, time and SHA-256
of every source the build read, the compiled modules and every sanstack module they import
(mypyc copies the ``Final`` constants of those into the machine code).

The package's ``__init__`` calls :func:`choose` before anything else is imported. The
extensions are used only when every source is still the one in the stamp, so a ``.py``
edited after the build is never shadowed by stale machine code, and never with
``SANSTACK_PURE_PYTHON=1``. Otherwise a meta-path finder loads each listed module from its
``.py``: the pure-Python build, exactly the code as written. The check costs a ``stat`` per
source, and a hash only for a file whose time or size changed (a checkout).

A module is listed only if it is fully typed, no interpreted class subclasses its classes
(or that class allows it), no test replaces its globals, and its dataclasses have no
``ClassVar`` (mypyc/mypyc#1122 makes one a field).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

# The hot, fully typed modules: the target's and the initiator's data path and the other
# sans-IO protocol cores they run.
COMPILED_MODULES: Final = (
    "sanstack.iscsi.initiator_framing",
    "sanstack.nbd.server_connection",
    "sanstack.mpio.map_read",
    # The host's data path: NBD edge -> map -> LUN -> session, and the driver under both.
    "sanstack.edge.driver",
    "sanstack.nbd.server",
    "sanstack.initiator.lun_device",
    "sanstack.initiator.session",
    "sanstack.initiator.responses",
    # Subclasses of compiled classes (LogicalUnit, FileDevice) must be compiled too.
    "sanstack.target.workers_core",
    "sanstack.target.shared_files",
    "sanstack.iscsi.target_phases",
    "sanstack.iscsi.target_task_management",
    "sanstack.iscsi.digest",
    "sanstack.scsi.sbc",
    "sanstack.scsi.lun",
    "sanstack.scsi.pr",
    "sanstack.block.file",
    "sanstack.block.io_stats",
    "sanstack.iscsi.initiator_connection",
    "sanstack.iscsi.initiator_requests",
    "sanstack.iscsi.initiator_events",
    "sanstack.iscsi.initiator_tasks",
    "sanstack.iscsi.pdu",
    "sanstack.iscsi.pdu_reader",
    "sanstack.iscsi.pdu_stream",
    "sanstack.iscsi.serial_number",
    "sanstack.iscsi.target_connection",
    "sanstack.iscsi.target_events",
    "sanstack.iscsi.target_tasks",
    "sanstack.mpio.selectors",
    "sanstack.nbd.events",
    "sanstack.nbd.protocol",
    "sanstack.scsi.alua",
    "sanstack.scsi.cdb",
    "sanstack.scsi.command",
    "sanstack.scsi.command_stats",
    "sanstack.scsi.logical_unit",
    "sanstack.scsi.sbc_rw",
    "sanstack.scsi.sense",
)

# mypyc's group: named inside the package, so its shared library lands beside this file.
GROUP_NAME: Final = "sanstack.native_group"
PURE_PYTHON_ENV: Final = "SANSTACK_PURE_PYTHON"
STAMP_ENV: Final = "SANSTACK_NATIVE_STAMP"  # read another stamp (tests)
PACKAGE_DIR: Final = Path(__file__).resolve().parent
SOURCE_ROOT: Final = PACKAGE_DIR.parent
STAMP_FILE: Final = PACKAGE_DIR / "native_build.stamp"
STALE_WARNING: Final = (
    "sanstack: compiled modules are stale (src changed since scripts/build-native); "
    "using pure Python"
)


def source_path(module: str) -> Path:
    """The ``.py`` of a module or package under ``src``."""
    base = SOURCE_ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One source a build read, as the stamp keeps it (path relative to ``src``)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> SourceRecord:
        data = path.read_bytes()
        st = path.stat()
        relative = path.relative_to(SOURCE_ROOT).as_posix()
        return cls(relative, len(data), st.st_mtime_ns, hashlib.sha256(data).hexdigest())

    def is_current(self) -> bool:
        path = SOURCE_ROOT / self.path
        try:
            st = path.stat()
            if st.st_size == self.size and st.st_mtime_ns == self.mtime_ns:
                return True
            return hashlib.sha256(path.read_bytes()).hexdigest() == self.sha256
        except OSError:
            return False


@dataclass(frozen=True, slots=True)
class Stamp:
    """What a build was made with (``key value`` lines) and from (``source`` lines)."""

    fields: dict[str, str]
    sources: tuple[SourceRecord, ...]

    def format(self) -> str:
        lines = [f"{key} {value}" for key, value in self.fields.items()]
        lines += [f"source {s.path} {s.size} {s.mtime_ns} {s.sha256}" for s in self.sources]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Stamp:
        fields: dict[str, str] = {}
        sources = []
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "source":
                path, size, mtime_ns, sha256 = value.split(" ")
                sources.append(SourceRecord(path, int(size), int(mtime_ns), sha256))
            else:
                fields[key] = value
        return cls(fields, tuple(sources))

    def matches_sources(self) -> bool:
        """Built from the list and every source as they are now."""
        if self.fields.get("modules") != ",".join(COMPILED_MODULES) or not self.sources:
            return False
        return all(source.is_current() for source in self.sources)


def stamp_path() -> Path:
    return Path(os.environ.get(STAMP_ENV) or STAMP_FILE)


def read_stamp(path: Path) -> Stamp | None:
    """The stamp at ``path``; None when there is none (nothing built)."""
    try:
        return Stamp.parse(path.read_text())
    except (OSError, ValueError):
        return None


class _SourceFinder:
    """Finds every listed module's ``.py`` even where an extension sits beside it."""

    sanstack_source_finder = True

    @staticmethod
    def find_spec(
        fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED_MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


_choice: tuple[bool, str] | None = None


def _decide() -> tuple[bool, str]:
    """(use the extensions, why not)."""
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return False, f"{PURE_PYTHON_ENV}={os.environ[PURE_PYTHON_ENV]}"
    path = stamp_path()
    stamp = read_stamp(path)
    if stamp is None:
        return False, "not built: run scripts/build-native"
    if not stamp.matches_sources():
        print(STALE_WARNING, file=sys.stderr, flush=True)
        return False, "stale: src changed since scripts/build-native"
    return True, ""


def choose() -> None:
    """Decide once per process; without the extensions, import the listed modules' sources."""
    global _choice  # noqa: PLW0603 - the one decision of this process
    if _choice is not None:
        return
    _choice = _decide()
    # A test that imports the package afresh must not stack finders.
    installed = any(getattr(f, "sanstack_source_finder", False) for f in sys.meta_path)
    if not _choice[0] and not installed:
        sys.meta_path.insert(0, _SourceFinder)


def extension_of(module: str) -> Path | None:
    """The built extension module beside a listed module's source, if there is one."""
    source = source_path(module)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_name(source.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def is_compiled(module: ModuleType) -> bool:
    loader = getattr(module.__spec__, "loader", None)
    return isinstance(loader, importlib.machinery.ExtensionFileLoader)


def missing_build_tools() -> str | None:
    """What building the extensions needs and this machine lacks (None: nothing)."""
    import shutil  # not at import: every process imports this module first
    import sysconfig

    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        return f"no Python headers ({headers})"
    return None


@dataclass(frozen=True, slots=True)
class NativeStatus:
    """Whether this process uses the compiled modules, and which it has loaded."""

    native: bool
    reason: str  # why not, when not
    built: tuple[str, ...]  # listed modules with an extension beside their source
    loaded: tuple[str, ...]  # listed modules this process imported from their extension

    def summary(self) -> str:
        if not self.native:
            return f"pure Python ({self.reason})"
        unbuilt = len(COMPILED_MODULES) - len(self.built)
        missing = f" ({unbuilt} listed but not built)" if unbuilt else ""
        return f"native: {len(self.built)} compiled modules{missing}"


def status() -> NativeStatus:
    choose()
    assert _choice is not None
    native, reason = _choice
    built = tuple(name for name in COMPILED_MODULES if extension_of(name) is not None)
    loaded = tuple(
        name for name in COMPILED_MODULES if name in sys.modules and is_compiled(sys.modules[name])
    )
    if native and not built:
        return NativeStatus(False, "no compiled module is built", built, loaded)
    return NativeStatus(native, reason, built, loaded)

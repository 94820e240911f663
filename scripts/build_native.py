"""Compile sanstack.native.COMPILED_MODULES with mypyc, in place (run by scripts/build-native).

The extension modules land next to their ``.py`` files under ``src/sanstack`` (so the
editable install imports them) and the group's shared library in ``src/sanstack``; C
sources and objects go to a build directory outside the source tree. The stamp, written
last, records what the build read: nothing is rebuilt while those sources, mypy and Python
are the same, and a process uses the build only while the sources are (sanstack.native).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# Reading the list must not load the build this script is about to replace.
os.environ["SANSTACK_PURE_PYTHON"] = "1"
sys.path.insert(0, str(SRC))

from sanstack import native  # noqa: E402


def imported_sanstack_modules(path: Path) -> set[str]:
    """Every sanstack module or package ``path`` imports, its parent packages included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != "sanstack":
            continue
        for end in range(1, len(parts) + 1):
            module = ".".join(parts[:end])
            if native.source_path(module).is_file():
                found.add(module)
    return found


def build_inputs() -> list[Path]:
    """The compiled modules' sources and every sanstack source they import, transitively."""
    seen: set[str] = set()
    todo = list(native.COMPILED_MODULES)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imported_sanstack_modules(native.source_path(module)))
    return sorted(native.source_path(module) for module in seen)


def wanted_fields() -> dict[str, str]:
    import mypy.version

    return {
        "mypy": mypy.version.__version__,
        "python": f"{sys.version.split()[0]} {sysconfig.get_config_var('EXT_SUFFIX')}",
        "modules": ",".join(native.COMPILED_MODULES),
    }


def up_to_date(fields: dict[str, str]) -> bool:
    stamp = native.read_stamp(native.STAMP_FILE)
    if stamp is None or stamp.fields != fields or not stamp.matches_sources():
        return False
    return all(native.extension_of(module) is not None for module in native.COMPILED_MODULES)


def build(build_dir: Path, jobs: int) -> None:
    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]

    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["MYPY_CACHE_DIR"] = str(build_dir / "mypy_cache")
    # mypy reads the project's configuration (strict, per-module overrides) in the root.
    os.chdir(ROOT)
    extensions = mypycify(
        [str(native.source_path(module)) for module in native.COMPILED_MODULES],
        opt_level="3",
        multi_file=True,  # one C file per module: the C compilers run in parallel
        group_name=native.GROUP_NAME,
        target_dir=str(build_dir / "c"),
    )
    # mypyc writes a dotted group's headers into the package's folder, and with multi_file
    # each module's C file includes them by their bare name.
    headers = build_dir / "c" / native.GROUP_NAME.rpartition(".")[0].replace(".", "/")
    for extension in extensions:
        extension.include_dirs.append(str(headers))
    # setuptools would read the project's own pyproject.toml in the root: build elsewhere.
    os.chdir(build_dir)
    setup(
        name="sanstack-native",
        ext_modules=extensions,
        package_dir={"": str(SRC)},
        script_args=[
            "--quiet",
            "build_ext",
            "--inplace",
            f"--parallel={jobs}",
            f"--build-temp={build_dir / 'temp'}",
            f"--build-lib={build_dir / 'lib'}",
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--build-dir",
        type=Path,
        default=ROOT / ".venv" / "native-build",
        help="where the C sources and objects go (default: .venv/native-build)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="C compilers run at once (default: the number of CPUs)",
    )
    args = parser.parse_args()
    missing = native.missing_build_tools()
    if missing:
        print(f"build-native: {missing}: sanstack runs as pure Python")
        return 0
    fields = wanted_fields()
    if up_to_date(fields):
        print(f"build-native: up to date ({len(native.COMPILED_MODULES)} compiled modules)")
        return 0
    started = time.monotonic()
    inputs = [native.SourceRecord.of(path) for path in build_inputs()]
    # Until the new stamp is written, nothing built before is used.
    with contextlib.suppress(FileNotFoundError):
        native.STAMP_FILE.unlink()
    for old in sorted(native.PACKAGE_DIR.rglob("*.so")):  # every extension here is ours
        old.unlink()
    build(args.build_dir.resolve(), args.jobs)
    stamp = native.Stamp(fields, tuple(inputs))
    if not stamp.matches_sources():
        print("build-native: sources changed during the build: run it again", file=sys.stderr)
        return 1
    native.STAMP_FILE.write_text(stamp.format())
    took = time.monotonic() - started
    print(f"build-native: {len(native.COMPILED_MODULES)} compiled modules in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

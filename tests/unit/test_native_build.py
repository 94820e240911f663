"""The mypyc-compiled modules and their pure-Python fallback (sanstack.native).

Each probe is a fresh interpreter: which build a process uses is decided once, when
``sanstack`` is first imported.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sanstack import native

_PROBE = """
import importlib, json, sys
from sanstack import native
for name in native.COMPILED_MODULES:
    importlib.import_module(name)
status = native.status()
print(json.dumps({
    "native": status.native,
    "reason": status.reason,
    "summary": status.summary(),
    "loaded": list(status.loaded),
    "files": {name: sys.modules[name].__file__ for name in native.COMPILED_MODULES},
}))
"""


def probe(**env: str) -> tuple[dict[str, Any], str]:
    """Import every listed module in a fresh process: (its status, its stderr)."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in (native.PURE_PYTHON_ENV, native.STAMP_ENV)
    }
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, **env},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result, done.stderr


def built_here() -> bool:
    """Whether this checkout must run compiled: always in CI where a compiler is present
    (install-deps built it), and wherever a build was made."""
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return (ci and native.missing_build_tools() is None) or native.STAMP_FILE.exists()


def stamp_of_the_sources() -> native.Stamp:
    """A stamp of the compiled modules' sources as they are now."""
    sources = tuple(native.SourceRecord.of(native.source_path(m)) for m in native.COMPILED_MODULES)
    return native.Stamp({"modules": ",".join(native.COMPILED_MODULES)}, sources)


def test_the_compiled_modules_are_loaded_where_they_are_built() -> None:
    if not built_here():
        pytest.skip(f"not built here ({native.missing_build_tools() or 'no stamp'})")
    result, stderr = probe()
    assert result["native"], f"{result['summary']}; stderr: {stderr}"
    assert result["loaded"] == list(native.COMPILED_MODULES), result["files"]
    assert result["summary"] == f"native: {len(native.COMPILED_MODULES)} compiled modules"
    assert native.STALE_WARNING not in stderr


def test_pure_python_loads_every_module_from_its_source() -> None:
    result, stderr = probe(**{native.PURE_PYTHON_ENV: "1"})
    assert not result["native"]
    assert result["loaded"] == []
    assert all(path.endswith(".py") for path in result["files"].values()), result["files"]
    assert result["summary"] == "pure Python (SANSTACK_PURE_PYTHON=1)"
    assert stderr == ""


def test_a_stale_stamp_falls_back_to_pure_python_with_one_warning(tmp_path: Path) -> None:
    stamp = stamp_of_the_sources()
    edited = replace(stamp.sources[0], mtime_ns=stamp.sources[0].mtime_ns + 1, sha256="0" * 64)
    stale = tmp_path / "stale.stamp"
    stale.write_text(replace(stamp, sources=(edited, *stamp.sources[1:])).format())
    result, stderr = probe(**{native.STAMP_ENV: str(stale)})
    assert not result["native"]
    assert result["loaded"] == []
    assert all(path.endswith(".py") for path in result["files"].values()), result["files"]
    assert stderr.splitlines() == [native.STALE_WARNING]
    assert result["summary"] == "pure Python (stale: src changed since scripts/build-native)"


def test_a_stamp_of_the_current_sources_is_not_stale(tmp_path: Path) -> None:
    # The control for the test above: the same stamp, unedited, read from the same place.
    fresh = tmp_path / "fresh.stamp"
    fresh.write_text(stamp_of_the_sources().format())
    result, stderr = probe(**{native.STAMP_ENV: str(fresh)})
    assert native.STALE_WARNING not in stderr
    if built_here():
        assert result["native"], result["summary"]
        assert result["loaded"] == list(native.COMPILED_MODULES)
    else:
        assert result["summary"] == "pure Python (no compiled module is built)"


def test_a_stamp_of_another_module_list_is_stale() -> None:
    stamp = stamp_of_the_sources()
    other = replace(stamp, fields={**stamp.fields, "modules": "sanstack.iscsi.pdu"})
    assert stamp.matches_sources()
    assert not other.matches_sources()


def test_a_source_touched_but_not_changed_is_current() -> None:
    record = stamp_of_the_sources().sources[0]
    assert replace(record, mtime_ns=record.mtime_ns - 1).is_current()  # a checkout
    assert not replace(record, mtime_ns=record.mtime_ns - 1, sha256="0" * 64).is_current()


def test_a_stamp_reads_back_as_written() -> None:
    stamp = stamp_of_the_sources()
    assert native.Stamp.parse(stamp.format()) == stamp


def _classvars_in_dataclasses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ClassDef):
            continue
        decorators = [ast.unparse(d) for d in node.decorator_list]
        if not any(d.startswith(("dataclass", "dataclasses.dataclass")) for d in decorators):
            continue
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and "ClassVar" in ast.unparse(item.annotation):
                found.append(f"{path.name}:{item.lineno} {node.name}.{ast.unparse(item.target)}")
    return found


def test_no_compiled_dataclass_has_a_classvar() -> None:
    # mypyc makes a dataclass's ClassVar a field (mypyc/mypyc#1122): the compiled build
    # would then differ from the pure one, or fail at import.
    found = [
        hit
        for m in native.COMPILED_MODULES
        for hit in _classvars_in_dataclasses(native.source_path(m))
    ]
    assert not found, "use a module-level Final instead: " + ", ".join(found)


def test_no_interpreted_class_subclasses_a_compiled_one() -> None:
    """mypyc refuses to make an instance of an interpreted subclass of a compiled class
    ("interpreted classes cannot inherit from compiled"): such a subclass must be compiled
    too, or its base left interpreted. Checked on the sources, so in both builds."""
    import importlib
    import inspect
    import pkgutil

    import sanstack

    compiled = set(native.COMPILED_MODULES)
    classes: dict[str, list[type]] = {}
    for info in pkgutil.walk_packages(sanstack.__path__, "sanstack."):
        if info.name.endswith("__main__") or info.name.endswith("worker_process"):
            continue  # run as scripts; worker_process is checked through its classes below
        module = importlib.import_module(info.name)
        classes[info.name] = [
            c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == info.name
        ]
    from sanstack.target import worker_process

    classes[worker_process.__name__] = [
        c
        for _, c in inspect.getmembers(worker_process, inspect.isclass)
        if c.__module__ == worker_process.__name__
    ]
    wrong = [
        f"{name}.{cls.__name__}({base.__module__}.{base.__name__})"
        for name, found in classes.items()
        if name not in compiled
        for cls in found
        for base in cls.__mro__[1:]
        if base.__module__ in compiled
        and not _is_protocol_or_exception(base)
        and base.__name__ not in _classes_open_to_interpreted_subclasses(base.__module__)
    ]
    assert not wrong, f"interpreted subclasses of compiled classes: {wrong}"


def _classes_open_to_interpreted_subclasses(module: str) -> set[str]:
    """The classes of ``module`` marked ``@mypyc_attr(allow_interpreted_subclasses=True)``."""
    tree = ast.parse(native.source_path(module).read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any("allow_interpreted_subclasses=True" in ast.unparse(d) for d in node.decorator_list)
    }


_INIT_PROBE = """
import dataclasses, importlib, inspect, json
from sanstack import native
checked, wrong = [], []
for name in native.COMPILED_MODULES:
    module = importlib.import_module(name)
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != name or not dataclasses.is_dataclass(cls):
            continue
        if cls.__dataclass_params__.init:
            continue
        fields = dataclasses.fields(cls)
        wanted = [(f.name, f.default) for f in fields if f.init]
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        got = [
            (p.name, dataclasses.MISSING if p.default is p.empty else p.default)
            for p in parameters
            if p.kind is p.POSITIONAL_OR_KEYWORD
        ]
        if got != wanted or len(got) != len(parameters):
            wrong.append(f"{name}.{cls.__name__}: takes {got}, its fields {wanted}")
            continue
        instance = cls(*[object() for f in fields if f.init and f.default is dataclasses.MISSING])
        for f in fields:
            if not hasattr(instance, f.name):
                wrong.append(f"{name}.{cls.__name__} leaves {f.name} unset")
            elif not f.init:
                factory = f.default_factory
                default = factory() if factory is not dataclasses.MISSING else f.default
                if getattr(instance, f.name) != default:
                    wrong.append(f"{name}.{cls.__name__}.{f.name} is not its default")
        checked.append(cls.__name__)
print(json.dumps({"checked": checked, "wrong": wrong}))
"""


def test_a_written_out_dataclass_init_takes_the_fields_the_dataclass_would() -> None:
    """A compiled dataclass on the data path writes its ``__init__`` out (``init=False``):
    one made by the dataclass stays interpreted Python. It must take exactly what the
    generated one would (the fields with ``init``, in order, with their defaults) and set
    every field. Checked on the pure build, whose methods have signatures to inspect: the
    compiled one is made from the same source."""
    done = subprocess.run(
        [sys.executable, "-c", _INIT_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, native.PURE_PYTHON_ENV: "1"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["wrong"] == []
    assert {"Command", "CommandResult", "SCSICommand", "CommandTask", "Request"} <= set(
        result["checked"]
    )


def _is_protocol_or_exception(cls: type) -> bool:
    # Protocols are never instantiated; mypyc compiles exception classes as plain Python
    # classes, which any class may subclass.
    return bool(getattr(cls, "_is_protocol", False)) or issubclass(cls, BaseException)

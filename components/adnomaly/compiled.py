"""Compiled hot paths: typed pure modules that mypyc turns into C extensions, and the guard that never lets a
stale extension run.

Why. The `auto` detector judges every window of every key through `detection.tail` and `detection.auto`.
In CPython that costs ~15 µs per feature record (`adnomaly bench detector`), most of it the interpreter's
overhead on float arithmetic and attribute access, not the arithmetic itself. mypyc (mypy's compiler, from
PyPI, as black and mypy ship themselves) compiles exactly these typed modules to C extensions that perform
the same IEEE-754 operations in the same order, so the outputs are bit for bit the sources' (a unit test
compares NAB results files of both) at about twice the speed. The sources stay the definition: a machine
without a C compiler, and `ADNOMALY_PURE_PYTHON=1`, run them.

How. `python -m adnomaly.compiled` (make's `venv` step) compiles each group in `GROUPS` in a scratch copy of
the package tree and installs the extensions beside the sources, with a stamp holding the sha256 of the
group's sources and the compiler's version; when the stamp already matches it does nothing. Python's import
system prefers an extension to a source file in the same directory, so an edited source with the old
extension beside it would silently run the old code: the group's package calls `use_current` from its
`__init__`, which imports the group from its sources whenever the stamp does not match them (and says so)
or when `ADNOMALY_PURE_PYTHON=1`. A group is compiled together (its modules call each other natively), so it
is used whole or not at all.

Images: an extension is built for the interpreter that compiles it, so none travels from a checkout into
an image (`.dockerignore`); docker/Dockerfile's build stage compiles the group for the image's own Python
and fails when it did not compile.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parent  # the `adnomaly` package directory
# package -> its compiled modules, each after the modules it imports (the order sources are loaded in).
GROUPS: dict[str, tuple[str, ...]] = {"adnomaly.detection": ("tail", "auto")}
GROUP_LIBRARY = "_compiled"  # mypyc's shared library of a group: <package>/_compiled__mypyc<suffix>
STAMP = "_compiled.stamp"
PURE_ENV = "ADNOMALY_PURE_PYTHON"
EXTENSION_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # e.g. .cpython-311-x86_64-linux-gnu.so


def package_dir(package: str) -> Path:
    """The directory of a package under `adnomaly` (without importing it)."""
    top, *rest = package.split(".")
    if top != PACKAGE_ROOT.name:
        raise ValueError(f"{package} is not under {PACKAGE_ROOT.name}")
    return PACKAGE_ROOT.joinpath(*rest)


def sources_digest(directory: Path, modules: tuple[str, ...]) -> str:
    """The sha256 over the group's module names and source bytes, in order."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(module.encode() + b"\0" + (directory / f"{module}.py").read_bytes() + b"\0")
    return digest.hexdigest()


def extension_files(directory: Path, modules: tuple[str, ...]) -> list[Path]:
    """Every file a compiled group consists of: one extension per module plus the group's shared library."""
    return [directory / f"{name}{EXTENSION_SUFFIX}" for name in (*modules, f"{GROUP_LIBRARY}__mypyc")]


def read_stamp(directory: Path) -> dict[str, str]:
    try:
        stamp = json.loads((directory / STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def verdict(extensions_present: int, extensions_total: int, stamp_sources: str | None, sources: str,
            pure_requested: bool) -> str:  # fmt: skip
    """What a group's import should run: `compiled` (every extension there and stamped for these very
    sources), `sources` (nothing compiled, or pure Python asked for) or `stale` (extensions there that do
    not match the sources: run the sources, and say so). Pure."""
    if extensions_present == 0 or pure_requested:
        return "sources"
    if extensions_present == extensions_total and stamp_sources == sources:
        return "compiled"
    return "stale"


def use_current(package: str, modules: tuple[str, ...], directory: Path | None = None) -> str:
    """Called from the group's package `__init__`: make sure importing the group's modules runs code that
    matches their sources. Returns the verdict; for `sources` and `stale` with extensions present the
    modules are imported from their `.py` files now (Python would otherwise pick the extensions).
    `directory`: the package's directory, when it is not under `adnomaly`."""
    directory = directory or package_dir(package)
    files = extension_files(directory, modules)
    present = sum(path.exists() for path in files)
    if present == 0:  # nothing compiled: the plain import runs the sources; no stamp to read, no hashing
        return "sources"
    decision = verdict(present, len(files), read_stamp(directory).get("sources"),
                       sources_digest(directory, modules), os.environ.get(PURE_ENV) == "1")  # fmt: skip
    if decision == "compiled":
        return decision
    if decision == "stale":
        log.warning("%s: the compiled %s do not match their sources; running the sources (rebuild: "
                    "python -m adnomaly.compiled)", package, ", ".join(modules))  # fmt: skip
    for module in modules:  # dependencies first: a later module's imports find the earlier ones loaded
        name = f"{package}.{module}"
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, directory / f"{module}.py")
        assert spec is not None and spec.loader is not None
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules[name]
            raise
        setattr(sys.modules[package], module, loaded)  # as the import system binds a submodule
    return decision


# The build, run by the venv's interpreter in a scratch copy of the package tree: setuptools' build_ext with
# mypyc's extensions, in place. `--follow-imports=silent`: the group is type-checked as mypyc needs, the
# modules it imports (the spec, pydantic) are read for their types but not held to mypy's rules here.
_SETUP = """
import sys
from mypyc.build import mypycify
from setuptools import setup
group, *paths = sys.argv[1:]
setup(name="adnomaly-compiled", script_args=["build_ext", "--inplace"],
      ext_modules=mypycify(["--follow-imports=silent", *paths], group_name=group, opt_level="3"))
"""


def compiler_version() -> str | None:
    """mypy's version, or None when mypyc is not installed."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - stdlib since 3.8
        return None
    try:
        return f"mypy {version('mypy')}"
    except PackageNotFoundError:
        return None


def build(package: str, modules: tuple[str, ...], force: bool = False) -> str:
    """Compile one group and install it beside its sources; a line saying what happened. Raises
    `RuntimeError` when the compiler ran and failed (a source mypyc cannot compile is a bug to fix, not to
    hide); a missing compiler is only reported, as the sources run fine without it."""
    directory = package_dir(package)
    compiler = compiler_version()
    if compiler is None:
        return f"{package}: mypyc is not installed; the sources run (pip install mypy to compile)"
    cc = sysconfig.get_config_var("CC") or "cc"
    if shutil.which(cc.split()[0]) is None:
        return f"{package}: no C compiler ({cc}); the sources run"
    stamp = {"sources": sources_digest(directory, modules), "compiler": compiler}
    files = extension_files(directory, modules)
    if not force and read_stamp(directory) == stamp and all(path.exists() for path in files):
        return f"{package}: compiled {', '.join(modules)} up to date"
    relative = directory.relative_to(PACKAGE_ROOT.parent)
    with tempfile.TemporaryDirectory(prefix="adnomaly-compile-") as scratch:
        tree = Path(scratch) / PACKAGE_ROOT.name
        shutil.copytree(PACKAGE_ROOT, tree, ignore=shutil.ignore_patterns("__pycache__", "*.so", STAMP))
        paths = [str(relative / f"{module}.py") for module in modules]
        result = subprocess.run([sys.executable, "-c", _SETUP, f"{package}.{GROUP_LIBRARY}", *paths],
                                cwd=scratch, capture_output=True, text=True)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{package}: mypyc failed:\n{(result.stdout + result.stderr)[-4000:]}")
        (directory / STAMP).unlink(missing_ok=True)  # no stamp while extensions change: `stale`, never wrong
        for path in files:
            built = Path(scratch) / relative / path.name
            staging = path.with_name(path.name + ".new")
            shutil.copy2(built, staging)
            os.replace(staging, path)
    (directory / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
    return f"{package}: compiled {', '.join(modules)} with {compiler}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adnomaly.compiled", description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="compile even when the stamp says up to date")
    args = parser.parse_args(argv)
    status = 0
    for package, modules in GROUPS.items():
        try:
            print(build(package, modules, force=args.force))
        except RuntimeError as error:
            print(error, file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())

"""The compiled hot path (adnomaly.compiled): an extension runs only when it was built from the very sources
beside it, and when it runs its outputs are the sources' bit for bit (NAB results files compared whole)."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from adnomaly.compiled import (
    EXTENSION_SUFFIX,
    GROUP_LIBRARY,
    GROUPS,
    PURE_ENV,
    STAMP,
    extension_files,
    package_dir,
    read_stamp,
    sources_digest,
    verdict,
)

NAB_DIR = Path(__file__).resolve().parents[3] / "shared" / "third_party" / "nab"


def test_verdict() -> None:
    assert verdict(0, 3, None, "s", False) == "sources"  # nothing compiled
    assert verdict(0, 3, "s", "s", False) == "sources"
    assert verdict(3, 3, "s", "s", False) == "compiled"
    assert verdict(3, 3, "s", "s", True) == "sources"  # ADNOMALY_PURE_PYTHON=1
    assert verdict(3, 3, "old", "s", False) == "stale"  # a source edited after the build
    assert verdict(3, 3, None, "s", False) == "stale"  # no stamp: a build was cut off
    assert verdict(2, 3, "s", "s", False) == "stale"  # one extension missing: the group is used whole or not


def test_sources_digest_covers_names_order_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    first = sources_digest(tmp_path, ("a", "b"))
    assert first == sources_digest(tmp_path, ("a", "b"))
    assert first != sources_digest(tmp_path, ("b", "a"))
    (tmp_path / "b.py").write_text("y = 3\n")
    assert first != sources_digest(tmp_path, ("a", "b"))


def _fake_group(root: Path, stamp_matches: bool) -> None:
    """A package whose 'extensions' are garbage: loading one fails, so a passing import ran the sources."""
    package = root / "fakegroup"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent("""
        from pathlib import Path
        from adnomaly.compiled import use_current
        VERDICT = use_current(__name__, ("low", "high"), Path(__file__).parent)
    """)
    )
    (package / "low.py").write_text("def twice(x: float) -> float:\n    return 2 * x\n")
    (package / "high.py").write_text("from fakegroup.low import twice\n\nVALUE = twice(21.0)\n")
    for path in extension_files(package, ("low", "high")):
        path.write_bytes(b"not an ELF file")
    stamp = sources_digest(package, ("low", "high")) if stamp_matches else "built-from-older-sources"
    (package / STAMP).write_text(json.dumps({"sources": stamp, "compiler": "mypy test"}))


def _import_fake(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    code = "import fakegroup, fakegroup.high as h; print(fakegroup.VERDICT, h.VALUE, h.__file__.endswith('.py'))"
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(root), **env})  # fmt: skip


def test_a_stale_group_runs_its_sources_and_says_so(tmp_path: Path) -> None:
    _fake_group(tmp_path, stamp_matches=False)
    result = _import_fake(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["stale", "42.0", "True"]
    assert "do not match their sources; running the sources" in result.stderr


def test_pure_python_on_request(tmp_path: Path) -> None:
    _fake_group(tmp_path, stamp_matches=True)
    result = _import_fake(tmp_path, **{PURE_ENV: "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["sources", "42.0", "True"]
    assert result.stderr == ""


def test_a_current_group_loads_its_extensions(tmp_path: Path) -> None:
    """With the stamp matching, the import goes to the extensions (here garbage, so it fails loudly)."""
    _fake_group(tmp_path, stamp_matches=True)
    result = _import_fake(tmp_path)
    assert result.returncode != 0
    assert f"low{EXTENSION_SUFFIX}" in result.stderr or "ImportError" in result.stderr


def _compiled_in_use() -> bool:
    code = "import adnomaly.detection.auto as a, adnomaly.detection.tail as t; print(a.__file__, t.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return all(name.endswith(EXTENSION_SUFFIX) for name in out.stdout.split())


def test_make_compiles_the_detector_in_ci() -> None:
    """`make test` runs `make compiled` first: in CI the detector must run compiled, from these sources."""
    package, modules = "adnomaly.detection", GROUPS["adnomaly.detection"]
    directory = package_dir(package)
    built = all(path.exists() for path in extension_files(directory, modules))
    if not os.environ.get("CI") and not built:
        pytest.skip("the detector is not compiled here (make compiled); CI requires it")
    assert built, f"no compiled {modules} in {directory}: make compiled"
    assert (directory / f"{GROUP_LIBRARY}__mypyc{EXTENSION_SUFFIX}").exists()
    assert read_stamp(directory).get("sources") == sources_digest(directory, modules)
    assert _compiled_in_use()


@pytest.mark.skipif(
    not (NAB_DIR / "labels" / "combined_windows.json").is_file(),
    reason=f"the NAB subset is not at {NAB_DIR} (../shared/third_party/nab beside the repository)",
)
def test_compiled_detector_gives_the_sources_results_bit_for_bit(tmp_path: Path) -> None:
    """Every row's score on the NAB files at hand, written as NAB results files by the compiled detector
    and by its sources, compared byte for byte."""
    if not _compiled_in_use():
        if os.environ.get("CI"):
            pytest.fail("the detector is not compiled (make compiled)")
        pytest.skip("the detector is not compiled here (make compiled)")
    runs = {}
    for mode, env in (("compiled", {}), ("sources", {PURE_ENV: "1"})):
        out = tmp_path / mode
        subprocess.run([sys.executable, "-m", "adnomaly.cli", "bench", "nab", "--nab-dir", str(NAB_DIR),
                        "--detectors", "auto", "--results-dir", str(out), "--json"],
                       check=True, capture_output=True, timeout=300, env={**os.environ, **env})  # fmt: skip
        runs[mode] = sorted(path.relative_to(out) for path in out.rglob("*.csv"))
    assert runs["compiled"] == runs["sources"] and len(runs["compiled"]) == 31
    for relative in runs["compiled"]:
        assert filecmp.cmp(tmp_path / "compiled" / relative, tmp_path / "sources" / relative, shallow=False), relative

"""`pip install .` (not only `-e .`) must ship every package of the gateway and its data files.

The list in pyproject.toml is written by hand (migrations/ is mapped in as gateway.migrations), so a new
subpackage left out of it installs a gateway whose command fails to import: gateway.cli was, once.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_of_the_source_tree_is_listed():
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gateway").rglob("__init__.py")}
    listed = set(_setuptools()["packages"])
    assert found - listed == set(), "packages missing from pyproject.toml's [tool.setuptools] packages"
    assert listed - found == {"gateway.migrations"}


def test_the_data_files_the_code_reads_are_package_data():
    data = _setuptools()["package-data"]
    for package, patterns in data.items():
        folder = ROOT / _setuptools()["package-dir"].get(package, package.replace(".", "/"))
        for pattern in patterns:
            assert list(folder.glob(pattern)), f"{package}: {pattern} matches no file"
    assert (ROOT / "gateway" / "prices.json").exists() and "prices.json" in data["gateway"]

"""The vendored browser libraries (``tgateway/web/static/vendor``) are the npm packages the
lockfile pins, byte for byte, with their licences.

``scripts/vendor-frontend`` writes them and ``MANIFEST.json`` from ``frontend/package-lock.json``;
``scripts/vendor-frontend --check`` compares a fresh copy from npm (it needs the registry, so it is
not run here). These tests need no network: the manifest's hashes, the versions in the file names,
the lockfile and ``package.json`` must all agree, every file must be in the manifest, and where the
test clients install the same package version from npm (``tests/clients``), the bytes must match.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.tools import NODE_MODULES

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "tgateway" / "web" / "static" / "vendor"
FRONTEND = ROOT / "frontend"
# licences that allow redistributing the bundles as they are, with their notices
ALLOWED = {"MIT", "Apache-2.0", "Unlicense", "ISC", "BSD-2-Clause", "BSD-3-Clause"}


def manifest() -> dict[str, dict[str, str]]:
    return dict(json.loads((VENDOR / "MANIFEST.json").read_text())["files"])


def test_every_vendored_file_is_the_pinned_package_version() -> None:
    lock = json.loads((FRONTEND / "package-lock.json").read_text())["packages"]
    pinned = json.loads((FRONTEND / "package.json").read_text())["dependencies"]
    files = manifest()
    assert {e["role"] for e in files.values()} >= {"hls", "webtorrent", "nostr", "qr"}
    for name, entry in files.items():
        data = (VENDOR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        version = entry["version"]
        assert f"-{version}." in name, name  # the version is in the file name
        assert pinned[entry["package"]] == version, name  # an exact pin, no range
        assert lock[f"node_modules/{entry['package']}"]["version"] == version, name
        assert entry["license"] in ALLOWED, (name, entry["license"])
        licence = VENDOR / "LICENSES" / f"{entry['package']}-{version}.txt"
        assert licence.is_file() and licence.stat().st_size > 100, licence


def test_nothing_unlisted_is_vendored() -> None:
    listed = set(manifest())
    for path in VENDOR.iterdir():
        if path.is_file():
            assert path.name in listed | {"MANIFEST.json"}, path.name
    for path in (VENDOR / "LICENSES").iterdir():
        package_version = path.name.removesuffix(".txt").removesuffix(".third-party")
        assert any(f"{e['package']}-{e['version']}" == package_version for e in manifest().values()), path


def test_vendored_bytes_equal_npm_where_the_test_clients_have_the_same_version() -> None:
    compared = 0
    for name, entry in manifest().items():
        package = NODE_MODULES / entry["package"]
        if not (package / "package.json").is_file():
            continue
        if json.loads((package / "package.json").read_text())["version"] != entry["version"]:
            continue
        assert (package / entry["source"]).read_bytes() == (VENDOR / name).read_bytes(), name
        compared += 1
    # nostr-tools and webtorrent are test clients at the same versions (tests/clients/package.json)
    assert compared >= 2, "tests/clients/node_modules is missing: run scripts/install-test-deps"

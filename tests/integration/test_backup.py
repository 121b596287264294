"""docs/deploy.md's backup and restore, run as written against a real gateway.

The two shell blocks of the "Backup and restore" section are taken from the document; only their
first line (the folders) is replaced by the test's, and ``systemctl``/``chown`` are recorded
instead of run. The backup runs while the gateway serves; the restore goes into the data folder of
a stopped gateway, and a gateway started on it serves the backed-up files, byte for byte, with the
same Nostr identity, and its storage check finds nothing missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.twistd import GatewayProcess, gateway_config, wait_until

pytestmark = pytest.mark.integration

DEPLOY_MD = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
FOLDERS = re.compile(r"^DATA=/var/lib/tgateway ETC=/etc/tgateway BACKUP=.+$")


def doc_block(title: str) -> str:
    for block in re.findall(r"```sh\n(.*?)```", DEPLOY_MD.read_text(), re.S):
        if block.startswith(f"# {title}\n"):
            return str(block)
    raise AssertionError(f"docs/deploy.md has no ```sh block starting with '# {title}'")


def run_block(title: str, work: Path, data: Path, etc: Path, backup: Path) -> list[str]:
    """Run a block with the test's folders; return the systemctl/chown calls it made."""
    lines = doc_block(title).splitlines()
    assert FOLDERS.match(lines[1]), lines[1]
    lines[1] = f"DATA={data} ETC={etc} BACKUP={backup}"
    calls = work / f"{title.replace(' ', '-')}.calls"
    script = "\n".join([
        "set -euo pipefail",
        f'systemctl() {{ echo "systemctl $*" >>{calls}; }}',
        f'chown() {{ echo "chown $*" >>{calls}; }}',
        *lines,
    ])
    subprocess.run(["bash", "-c", script], cwd=work, check=True, timeout=120)
    return calls.read_text().splitlines() if calls.exists() else []


def put(gw: GatewayProcess, name: str, body: bytes) -> dict[str, object]:
    req = urllib.request.Request(gw.url("/api/upload"), data=body, method="PUT",
                                 headers={"X-Filename": name})
    with urllib.request.urlopen(req, timeout=30) as r:
        result: dict[str, object] = json.loads(r.read())
        return result


def get(gw: GatewayProcess, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(gw.url(path), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def npub(gw: GatewayProcess) -> str:
    status, body = get(gw, "/api/nostr/identity")
    assert status == 200
    return str(json.loads(body)["npub"])


def test_documented_backup_while_running_then_restore(tmp_path: Path) -> None:
    data, etc, backup = tmp_path / "data", tmp_path / "gw", tmp_path / "backup"
    config = gateway_config(data, storage={
        "metadata_db": str(data / "metadata.db"), "blob_storage": str(data / "blobs"),
        "chunk_storage": str(data / "chunks"), "blob_threshold": 65536, "chunk_size": 16384})
    files = {"small.txt": os.urandom(1000), "chunked.bin": os.urandom(300_000)}
    with GatewayProcess(config, etc) as gw:  # writes etc/config.yaml
        stored = {name: put(gw, name, body) for name, body in files.items()}
        identity = npub(gw)
        run_block("online backup", tmp_path, data, etc, backup)  # while it serves
        late = put(gw, "late.bin", os.urandom(5000))  # after the backup: not in it
    assert {p.name for p in backup.iterdir()} == {"metadata.db", "data.tar", "config.yaml"}

    calls = run_block("restore", tmp_path, data, etc, backup)
    assert calls == ["systemctl stop tgateway", f"chown -R tgateway:tgateway {data}",
                     "systemctl start tgateway"]
    assert (tmp_path / "data.before-restore" / "metadata.db").exists()  # the old folder, aside

    with GatewayProcess(config, etc) as gw:
        for name, body in files.items():
            status, got = get(gw, f"/api/download/{stored[name]['sha256']}")
            assert (status, hashlib.sha256(got).hexdigest()) == (200, hashlib.sha256(body).hexdigest())
        assert get(gw, f"/api/files/{late['sha256']}")[0] == 404
        assert npub(gw) == identity
        assert wait_until(lambda: "storage check finished" in gw.log(), timeout=20)
        assert "0 files with missing bytes" in gw.log()

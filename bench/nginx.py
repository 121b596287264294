"""Debian nginx as the reference file server of the benchmarks (one worker, sendfile on)."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

from harness.ports import free_tcp_port, wait_for_tcp


def start_nginx(root: Path, work: Path, core: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    """Serve ``root`` on a free loopback port, pinned to ``core``; returns (process, port)."""
    port = free_tcp_port()
    ng = work / "nginx"
    ng.mkdir(parents=True, exist_ok=True)
    conf = ng / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""
        worker_processes 1;
        daemon off;
        pid {ng}/nginx.pid;
        error_log {ng}/error.log;
        events {{ worker_connections 1024; }}
        http {{
            access_log off;
            sendfile on;
            tcp_nopush on;
            client_body_temp_path {ng}/body; proxy_temp_path {ng}/proxy;
            fastcgi_temp_path {ng}/fcgi; uwsgi_temp_path {ng}/uwsgi; scgi_temp_path {ng}/scgi;
            server {{ listen 127.0.0.1:{port}; root {root}; }}
        }}
    """))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen(["taskset", "-c", str(core), nginx, "-c", str(conf), "-p", str(ng)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for_tcp("127.0.0.1", port, timeout=10)
    return proc, port

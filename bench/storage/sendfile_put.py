#!/usr/bin/env python3
"""A raw ``PUT /api/upload`` whose body leaves the page cache with sendfile(2).

    python3 bench/storage/sendfile_put.py HOST PORT FILE

The benchmark's light client: curl copies every byte through user space on the way out, which
on a 2-core machine takes CPU from the gateway under test; this one hands the file to the kernel.
Prints the response (status line, then the JSON body) and exits non-zero unless it is 2xx.
"""

from __future__ import annotations

import os
import socket
import sys


def dechunk(data: bytes) -> bytes:
    out = []
    while data:
        line, _, data = data.partition(b"\r\n")
        n = int(line.split(b";")[0], 16)
        if n == 0:
            break
        out.append(data[:n])
        data = data[n + 2:]
    return b"".join(out)


def main() -> int:
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    size = os.path.getsize(path)
    head = (f"PUT /api/upload HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {size}\r\n"
            f"Content-Type: application/octet-stream\r\nX-Filename: {os.path.basename(path)}\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection((host, port)) as s, open(path, "rb") as f:
        s.sendall(head)
        s.sendfile(f)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    response = b"".join(chunks)
    status, _, rest = response.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        body = dechunk(body)
    sys.stdout.write(body.decode("utf-8", "replace"))
    code = int(status.split()[1]) if len(status.split()) > 1 else 0
    return 0 if 200 <= code < 300 else 1


if __name__ == "__main__":
    sys.exit(main())

"""A real S3-protocol server for the S3 media store's tests: moto's server mode (``moto[server]`` from PyPI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.polling import wait_until
from tests.support.procs import free_port, http_ok

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"


@contextmanager
def moto_server(tmp: Path) -> Iterator[str]:
    """Start ``moto_server`` on a free port; its URL while it runs."""
    port = free_port()
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    log = (tmp / "moto.log").open("ab")
    popen = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(port)], cwd=tmp, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: popen.poll() is not None or http_ok(f"{url}/moto-api/"), timeout=60,
                   what="moto_server answers")
        if popen.poll() is not None:
            raise AssertionError(f"moto_server exited: {(tmp / 'moto.log').read_text()[-2000:]}")
        yield url
    finally:
        popen.terminate()
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)
        log.close()

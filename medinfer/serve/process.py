"""``medinfer serve`` as a child process on free loopback ports: what the tests and the serving benchmark run
against (a real Triton server, started and stopped the way an operator would)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from medinfer.errors import MedinferError


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def serving_python(root: Path) -> tuple[str | None, str]:
    """An interpreter that can run ``medinfer serve`` — ``MEDINFER_SERVE_PYTHON``, ``root/.venv-serve`` (which
    .ci/run builds) or this one — and, where there is none, why."""
    from medinfer.serve.server import unavailable_reason

    if os.environ.get("MEDINFER_SERVE_PYTHON"):
        return os.environ["MEDINFER_SERVE_PYTHON"], ""
    candidate = root / ".venv-serve" / "bin" / "python"
    if candidate.exists():
        return str(candidate), ""
    reason = unavailable_reason()
    return (sys.executable, "") if reason is None else (None, reason)


class ServerProcess:
    """``python -m medinfer serve --engine ENGINE ARGS...`` on 127.0.0.1; returns once it says it is ready."""

    def __init__(self, python: str, engine: str | Path, *args: str, ready_s: float = 120.0):
        self.http, self.grpc, self.metrics = free_ports(3)
        self.proc = subprocess.Popen(
            [python, "-m", "medinfer", "serve", "--engine", str(engine), "--address", "127.0.0.1",
             "--http-port", str(self.http), "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics),
             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + ready_s
        while not any(line.startswith("serving") and line.rstrip().endswith("ready") for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise MedinferError("medinfer serve did not become ready:\n" + "".join(self.lines[-40:]))
            time.sleep(0.1)

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)

    @property
    def urls(self) -> dict[str, str]:
        return {"http": f"http://127.0.0.1:{self.http}", "grpc": f"grpc://127.0.0.1:{self.grpc}"}

    def stop(self) -> int:
        """SIGTERM, as an operator's service manager sends it; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

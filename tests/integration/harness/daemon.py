"""Run `python -m monitor run --config F` as a subprocess, the way an operator would.

The HTTP port is chosen here and passed as TIDEMARK_SERVER__PORT (the environment wins
over the file), with the bind address forced to 127.0.0.1, so test configs need not
carry a port. TIDEMARK_* variables of the calling environment are not inherited.
stdout and stderr go to files, so a failure can show the log tail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from .ports import free_port

__all__ = ["DaemonError", "TidemarkProcess", "free_port"]

REPO_ROOT = Path(__file__).resolve().parents[3]


class DaemonError(AssertionError):
    """The daemon did not start, become ready or stop as expected (message has the log)."""


class TidemarkProcess:
    """One daemon process; `start()` returns once /readyz answers 200."""

    def __init__(
        self,
        config: Path | None,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        self.config = config
        self.port = port or free_port()
        self.stdout_path = log_dir / f"tidemark-{self.port}.stdout"
        self.stderr_path = log_dir / f"tidemark-{self.port}.stderr"
        self.argv = (
            list(argv)
            if argv is not None
            else [
                sys.executable,
                "-m",
                "monitor",
                "run",
                *(["--config", str(config)] if config is not None else []),
            ]
        )
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TIDEMARK_")}
        self.env = {
            **inherited,
            "PYTHONUNBUFFERED": "1",
            "TIDEMARK_SERVER__PORT": str(self.port),
            "TIDEMARK_SERVER__BIND_ADDRESS": "127.0.0.1",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    # --- URLs ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    @property
    def readyz_url(self) -> str:
        return f"{self.url}/readyz"

    @property
    def healthz_url(self) -> str:
        return f"{self.url}/healthz"

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        """(status, body) of GET `path`; status 0 when nothing answers."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError):
            return 0, ""

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, ready_timeout: float = 30.0) -> TidemarkProcess:
        if self.process is not None:
            raise DaemonError("TidemarkProcess.start() called twice")
        self.stdout_path.parent.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=REPO_ROOT,
            )
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll /readyz until 200; DaemonError with the log tail if it exits or times out."""
        deadline = time.monotonic() + timeout
        status, body = 0, ""
        while time.monotonic() < deadline:
            code = self.returncode
            if code is not None:
                raise DaemonError(f"tidemark exited with {code} before ready\n{self.log_tail()}")
            status, body = self.get("/readyz", timeout=1.0)
            if status == 200:
                return
            time.sleep(0.05)
        raise DaemonError(
            f"tidemark not ready after {timeout}s (last /readyz: {status} {body.strip()!r})\n"
            f"{self.log_tail()}"
        )

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `sig`, wait for exit and return the exit code (negative: killed by signal).

        If it does not exit within `timeout`, it is killed and DaemonError is raised.
        """
        if self.process is None:
            raise DaemonError("tidemark was never started")
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                raise DaemonError(
                    f"tidemark ignored signal {sig} for {timeout}s and was killed\n"
                    f"{self.log_tail()}"
                ) from None
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL if still running (fixture teardown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> TidemarkProcess:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.returncode is None and self.process is not None:
            try:
                self.stop()
            finally:
                self.kill()

    # --- output ------------------------------------------------------------------------
    def output(self) -> str:
        """Everything written so far, stdout then stderr."""
        parts = [
            p.read_text(errors="replace")
            for p in (self.stdout_path, self.stderr_path)
            if p.exists()
        ]
        return "".join(parts)

    def log_records(self) -> list[dict[str, Any]]:
        """JSON log lines (structlog's JSON renderer) from both streams; other lines skipped."""
        records = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def log_tail(self, lines: int = 40) -> str:
        text = []
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                text.append(f"--- {path.name} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(text) or "(no output)"

"""A real Dask cluster on 127.0.0.1 for tests and benchmarks: `dask scheduler` and
`dask worker` processes, each in its own process group, all stopped by `stop()`.

Workers run without a nanny (`--no-nanny`), so the process a test SIGKILLs is the
worker itself (a nanny would restart it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DASK = Path(sys.executable).with_name("dask")
START_TIMEOUT_S = 60.0


class Cluster:
    """A scheduler and named workers (name -> resources, e.g. {"GPU": 1})."""

    def __init__(
        self,
        folder: Path,
        workers: dict[str, dict[str, float]],
        nthreads: int = 8,
        scheduler_env: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.workers_spec = workers
        self.nthreads = nthreads
        self.scheduler_env = scheduler_env or {}  # e.g. DASK_DISTRIBUTED__SCHEDULER__...
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.address = ""
        self.scheduler_file = folder / "scheduler.json"
        self._all: list[subprocess.Popen[bytes]] = []

    def _spawn(
        self, args: list[str], log: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with (self.folder / log).open("ab") as out:
            proc = subprocess.Popen(
                [str(DASK), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() kills its children too
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        self._all.append(proc)
        return proc

    def start(self) -> Cluster:
        self.start_scheduler()
        for name in self.workers_spec:
            self.start_worker(name)
        self.wait_for_workers(len(self.workers_spec))
        return self

    def start_scheduler(self, port: int = 0) -> None:
        self.scheduler_file.unlink(missing_ok=True)
        self.scheduler = self._spawn(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
                "--scheduler-file",
                str(self.scheduler_file),
            ],
            "scheduler.log",
            self.scheduler_env,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.scheduler_file.exists() or not self.scheduler_file.read_text().strip():
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                raise RuntimeError(f"the scheduler did not start: {self.log('scheduler.log')}")
            time.sleep(0.05)
        time.sleep(0.05)  # the file is written in one go, but give it a moment
        self.address = json.loads(self.scheduler_file.read_text())["address"]

    def start_worker(self, name: str) -> None:
        args = [
            "worker",
            self.address,
            "--name",
            name,
            "--nthreads",
            str(self.nthreads),
            "--no-nanny",
            "--no-dashboard",
            "--death-timeout",
            "30",  # a worker whose scheduler is gone exits on its own
        ]
        resources = self.workers_spec.get(name) or {}
        if resources:
            args += ["--resources", ",".join(f"{k}={v:g}" for k, v in resources.items())]
        self.workers[name] = self._spawn(args, f"worker-{name}.log")

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=START_TIMEOUT_S, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=START_TIMEOUT_S)

    def pid(self, name: str) -> int:
        return self.workers[name].pid

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a process (its group) and reap it."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def log(self, name: str) -> str:
        path = self.folder / name
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        """Stop everything started here; raise if a process outlived its SIGKILL."""
        for proc in self._all:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 1  # a worker whose scheduler is gone may linger
        for proc in self._all:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(proc)
        for proc in self._all:  # children of a group (none expected): SIGKILL the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        alive = [proc.pid for proc in self._all if proc.poll() is None]
        if alive:
            raise RuntimeError(f"cluster processes still running: {alive}")

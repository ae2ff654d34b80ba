"""One worker process (addon/workers.py): its process, its control connection's writer, its state as
the pool sees it; and what its process group leaves when it is reaped."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from addon import worker_link

WORKER_MAIN = str(Path(__file__).resolve().parent / "server" / "worker_main.py")


@dataclass
class Worker:
    index: int  # its place among the workers
    slot: int = 0  # its process's slot in the shared counts (budgets.SharedCounts), while it runs
    process: subprocess.Popen | None = None
    writer: asyncio.StreamWriter | None = None
    port: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = 0.0
    retiring: bool = False
    task: asyncio.Task | None = None
    heard: float = 0.0  # (monotonic) when it last sent anything

    def answers(self) -> bool:
        return self.ready.is_set()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def send(self, message: dict) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(worker_link.encode(message))


def kill_group(process: subprocess.Popen) -> None:
    """What the reaped worker leaves in its process group (its planner's forkserver, resource tracker
    and planning processes, which a SIGKILL of the worker would leave to run under pid 1)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

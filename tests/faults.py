"""Deterministic faults: run a command that stops itself at a chosen point of the store writer
(`afip_probe.store.writer.PAUSE_ENV`), then SIGKILL it there. Nothing depends on the machine's speed:
the kill lands after exactly the chosen sample's chosen write, however slow or fast the run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from afip_probe.store.writer import PAUSE_ENV

# waiting for a process that will stop by itself: the bound only catches a run that never gets there
STOP_TIMEOUT_S = 600


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def kill_at(cmd: list[str], where: str, k: int, env: dict[str, str]) -> None:
    """Run `cmd` until the k-th sample it writes reaches `where` (tensors / tokens / commit), then SIGKILL it."""
    proc = subprocess.Popen(cmd, env=dict(env, **{PAUSE_ENV: f"{where}:{k}"}), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    try:
        while _state(proc.pid) != "T":
            if proc.poll() is not None:
                raise AssertionError(f"the run ended (rc {proc.returncode}) before {where}:{k}: "
                                     + proc.stderr.read().decode()[-1000:])
            if time.monotonic() > deadline:
                raise AssertionError(f"the run did not reach {where}:{k}")
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

"""A short description of the machine a run was taken on, for the report."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import psutil

from ._stats import MIB


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine() -> dict[str, str | int]:
    """CPU, core count, memory and operating system."""
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count() or 0,
        "memory_mib": round(psutil.virtual_memory().total / MIB),
        "os": platform.platform(),
    }

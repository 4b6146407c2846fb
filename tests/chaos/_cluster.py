"""A PostgreSQL cluster of its own for the fault-injection tests, which stop and restart it.

The tests never touch the server the rest of the suite uses. They run on a Debian
``postgresql-common`` cluster (``pg_createcluster`` / ``pg_ctlcluster``), by default version
15, named ``chaos``, on port 5499, with trust authentication on local connections. It is
created the first time it is needed; ``SG_CHAOS_PG_VERSION``, ``SG_CHAOS_PG_CLUSTER`` and
``SG_CHAOS_PG_PORT`` choose another one.

The cluster commands need the rights of root or of the ``postgres`` user; any other user
runs them through ``sudo -n``.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

#: Fast shutdown: sessions are terminated, then a clean checkpoint. Immediate: no
#: checkpoint, like a crash; the next start runs crash recovery.
STOP_MODES = ("fast", "immediate")

_TOOLS = ("pg_lsclusters", "pg_createcluster", "pg_ctlcluster", "pg_isready")


class ClusterUnavailable(Exception):
    """A cluster command failed, or the server did not come up (the message says why)."""


@dataclass(frozen=True)
class ChaosCluster:
    """The version, name and port of the cluster, and the commands that control it."""

    version: str
    name: str
    port: int
    host: str = "127.0.0.1"
    user: str = "postgres"

    @classmethod
    def from_environment(cls) -> ChaosCluster:
        return cls(
            version=os.environ.get("SG_CHAOS_PG_VERSION", "15"),
            name=os.environ.get("SG_CHAOS_PG_CLUSTER", "chaos"),
            port=int(os.environ.get("SG_CHAOS_PG_PORT", "5499")),
        )

    def url(self, dbname: str) -> str:
        """A plain ``postgresql://`` URL of database ``dbname`` on this cluster."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def conninfo(self, dbname: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    # -- life ------------------------------------------------------------------------

    def missing_prerequisites(self) -> str | None:
        """Why this machine cannot run the cluster (no tools, no rights), or ``None``."""
        missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
        if missing:
            return f"PostgreSQL's cluster tools are not installed ({', '.join(missing)})"
        if not _may_control_clusters():
            return "controlling a PostgreSQL cluster needs root, the postgres user or sudo"
        return None

    def ensure_running(self) -> bool:
        """Create the cluster if it does not exist and start it if it is down; return
        whether it had to be started. Raises :class:`ClusterUnavailable`."""
        status = self._status()
        if status is None:
            self._run(
                "pg_createcluster",
                self.version,
                self.name,
                "--port",
                str(self.port),
                "--",
                "--auth=trust",
            )
            status = "down"
        if status.startswith("online"):
            self.wait_ready()
            return False
        self.start()
        return True

    def start(self) -> None:
        """Start the cluster and wait until it accepts connections."""
        self._run("pg_ctlcluster", self.version, self.name, "start")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster (``fast`` or ``immediate``, see :data:`STOP_MODES`)."""
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode must be one of {STOP_MODES}, not {mode!r}")
        self._run("pg_ctlcluster", self.version, self.name, "stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """Restart the cluster and wait until it accepts connections."""
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode must be one of {STOP_MODES}, not {mode!r}")
        self._run("pg_ctlcluster", self.version, self.name, "restart", "-m", mode)
        self.wait_ready()

    def is_ready(self) -> bool:
        """Whether the server accepts connections now (``pg_isready``)."""
        command = ["pg_isready", "-q", "-h", self.host, "-p", str(self.port)]
        return subprocess.run(command, check=False, timeout=10).returncode == 0

    def wait_ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise ClusterUnavailable(
                    f"cluster {self.version}/{self.name} does not accept connections on port "
                    f"{self.port} after {within:.0f} s"
                )
            time.sleep(0.1)

    # -- plumbing --------------------------------------------------------------------

    def _status(self) -> str | None:
        """``online``, ``down`` (or another status word), or ``None`` if it does not exist."""
        listing = subprocess.run(
            ["pg_lsclusters", "--no-header"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        for line in listing.stdout.splitlines():
            fields = line.split()
            if fields[:2] == [self.version, self.name]:
                if fields[2] != str(self.port):
                    raise ClusterUnavailable(
                        f"cluster {self.version}/{self.name} exists on port {fields[2]}, "
                        f"not {self.port}; set SG_CHAOS_PG_PORT={fields[2]}"
                    )
                return fields[3]
        return None

    def _run(self, *command: str) -> None:
        full = _privileged(command)
        result = subprocess.run(full, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise ClusterUnavailable(
                f"{' '.join(full)} failed with status {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )


def _is_privileged() -> bool:
    return os.geteuid() == 0 or getpass.getuser() == "postgres"


def _may_control_clusters() -> bool:
    return _is_privileged() or shutil.which("sudo") is not None


def _privileged(command: Sequence[str]) -> list[str]:
    """``command`` as root or the ``postgres`` user would run it."""
    return list(command) if _is_privileged() else ["sudo", "-n", *command]

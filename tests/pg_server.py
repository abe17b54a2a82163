"""A throwaway, real PostgreSQL cluster for tests: initdb, start, stop, restart, kill.

The server only ever listens on 127.0.0.1 (on a free port it picks itself, kept across
restarts) and on a unix socket inside its own directory. Authentication is `trust`, fsync is
off (committed data survives `kill()`, not an OS crash): this is for tests, never for
data anyone wants to keep.

Running as root: initdb and pg_ctl refuse to run as root, so they run as the `postgres` user
through `runuser -u postgres --`, and the server's directory is chowned to that user. That user
must be able to reach the directory; pytest's own tmp dirs (/tmp/pytest-of-root, mode 700) are
not reachable, so when `base_dir` is not usable the server makes its own directory with
`tempfile.mkdtemp(prefix="collector-pg-", dir="/tmp")` instead (the same happens for any user
when `base_dir` is too long for a unix socket path). `.directory` says which one is in use.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Literal

import psycopg
from psycopg import sql

SERVER_USER = "postgres"  # the OS user the server runs as when we are root
START_TIMEOUT_S = 30
# sun_path is 108 bytes; postgres appends "/.s.PGSQL.<port>" to the socket directory.
_MAX_SOCKET_DIR_LEN = 107 - len("/.s.PGSQL.65535")

StopMode = Literal["smart", "fast", "immediate"]


def find_bindir() -> Path | None:
    """The directory holding initdb/pg_ctl: $COLLECTOR_PG_BINDIR if set, else
    `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin; None if none has initdb."""
    override = os.environ.get("COLLECTOR_PG_BINDIR")
    if override:
        return Path(override) if (Path(override) / "initdb").is_file() else None
    pg_config = shutil.which("pg_config")
    if pg_config:
        proc = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                              timeout=30, check=False)
        bindir = Path(proc.stdout.strip())
        if proc.returncode == 0 and (bindir / "initdb").is_file():
            return bindir
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    candidates.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)
    return candidates[-1] if candidates else None


def postgres_available() -> str | None:
    """None when a server can be started here, else the reason it cannot."""
    if find_bindir() is None:
        where = os.environ.get("COLLECTOR_PG_BINDIR") or "pg_config --bindir or " \
            "/usr/lib/postgresql/*/bin"
        return f"PostgreSQL server binaries (initdb, pg_ctl) not found in {where}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root, but there is no {SERVER_USER!r} user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root, but `runuser` is missing"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One throwaway cluster in `base_dir` (see the module docstring for when another
    directory is used). `start()` after `stop()`/`kill()` reuses the same port and data.
    As a context manager it starts on entry and `close()`s on exit."""

    def __init__(self, base_dir: Path) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError(postgres_available())
        self.bindir = bindir
        self._as_root = os.geteuid() == 0
        base_dir = Path(base_dir).absolute()
        if self._usable(base_dir):
            self._owns_directory = not base_dir.exists()
            base_dir.mkdir(parents=True, exist_ok=True)
            self.directory = base_dir
        else:
            self._owns_directory = True
            self.directory = Path(tempfile.mkdtemp(prefix="collector-pg-", dir="/tmp"))
        self.data_dir = self.directory / "data"
        self.socket_dir = self.directory / "sock"
        self.log_path = self.directory / "server.log"
        self.socket_dir.mkdir(exist_ok=True)
        if self._as_root:
            user = pwd.getpwnam(SERVER_USER)
            for path in (self.directory, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._port: int | None = None

    def _usable(self, base_dir: Path) -> bool:
        if len(str(base_dir / "sock")) > _MAX_SOCKET_DIR_LEN:
            return False
        if not self._as_root:
            return True
        parent = next(p for p in (base_dir, *base_dir.parents) if p.exists())
        # Ground truth for "can the server user reach it": ask as that user.
        probe = ["runuser", "-u", SERVER_USER, "--", "test", "-x", str(parent)]
        return subprocess.run(probe, cwd="/", capture_output=True, timeout=30,
                              check=False).returncode == 0

    # -- running commands ---------------------------------------------------------------

    def _run(self, *args: str, check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", SERVER_USER, "--", *args] if self._as_root else list(args)
        # cwd: the server user may not be allowed into ours (e.g. /root).
        proc = subprocess.run(command, cwd=self.directory, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                               f"{proc.stdout}{proc.stderr}\n{self.log_tail()}")
        return proc

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args,
                         check=check, timeout=START_TIMEOUT_S + 30)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server log, for error messages."""
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return "(no server log yet)"
        return "server log tail:\n" + "\n".join(tail)

    # -- lifecycle ----------------------------------------------------------------------

    def _initdb(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data_dir), "--auth=trust",
                  f"-U{SERVER_USER}", "--encoding=UTF8", "--no-locale", "--no-sync")
        self._port = free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self._port),
            "unix_socket_directories": str(self.socket_dir),
            # Fast, and still safe against a server crash (kill()): only an OS crash could
            # lose data. synchronous_commit stays on, or kill() would lose commits.
            "fsync": "off",
        }
        # Appending keeps the file's owner (the server user) when we are root.
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# collector test server\n")
            for name, value in settings.items():
                conf.write(f"{name} = '{value}'\n")

    def start(self) -> None:
        """initdb on first use, then start and wait until it accepts connections.
        A no-op when already running."""
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self.is_running:
            return
        self._pg_ctl("start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self.log_path))
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL on port {self.port} did not accept "
                                       f"connections within {START_TIMEOUT_S}s: {error}\n"
                                       f"{self.log_tail()}") from error
                time.sleep(0.1)

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server (`pg_ctl stop -m <mode>`) and wait for it; a no-op when stopped."""
        if self.is_running:
            self._pg_ctl("stop", "-w", "-t", str(START_TIMEOUT_S), "-m", mode)

    def kill(self) -> None:
        """Stop immediately, without a clean shutdown (the next start runs crash recovery)."""
        self.stop("immediate")

    @property
    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._pg_ctl("status", check=False).returncode == 0

    def close(self) -> None:
        """Stop if running and remove everything this server wrote."""
        if (self.data_dir / "PG_VERSION").exists():
            self.stop("immediate")
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- addresses and databases --------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server has not been started yet; call start() first")
        return self._port

    def url(self, dbname: str = "postgres", user: str = SERVER_USER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    @property
    def admin_url(self) -> str:
        """The `postgres` superuser on the `postgres` database."""
        return self.url()

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected to it."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))


def start_throwaway() -> PostgresServer:
    """A started server in a new directory under the temp dir (reachable by the server user
    when root), for scripts outside pytest; close() removes it. RuntimeError with the reason
    when no server can be had here."""
    reason = postgres_available()
    if reason is not None:
        raise RuntimeError(f"cannot start a throwaway PostgreSQL: {reason}")
    server = PostgresServer(Path(tempfile.gettempdir()) / f"collector-pg-{uuid.uuid4().hex[:8]}")
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server

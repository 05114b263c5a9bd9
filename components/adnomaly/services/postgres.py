"""PostgreSQL as a local process: one private cluster per state directory, password auth over loopback.

Running as root
---------------
PostgreSQL refuses to run as root. When we are root, `initdb` and `postgres` run as the `postgres` system
user (created by Debian's `postgresql` package), the data directory is chowned to it, and the state dir is
made traversable (mode 0711: others may pass through, not list). Every parent of the state dir must be
traversable by `postgres` too. We do not loosen parents we do not own: a state dir under a private parent
(e.g. /root, mode 0700) fails at once with a ServiceError naming the blocking directory, and the caller
picks a reachable place (e.g. /var/tmp/..., /srv/..., or a temp dir whose parents it opened with o+x;
`tests/integration/conftest.py` does the latter). Moving the data silently elsewhere would leave orphaned
clusters behind when the state dir is deleted, so we fail loudly instead.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
from pathlib import Path

import psycopg
from adnomaly.services.base import (
    LocalServer,
    ManagedProcess,
    ServiceError,
    apt_install,
    chown_to,
    find_executable,
    generate_password,
    port_open,
    run_tool,
    running_as_root,
    stored_port,
    user_can_traverse,
    write_private_file,
)
from psycopg import sql

SERVICE_USER = "postgres"
SUPERUSER = "postgres"
DATABASE = "adnomaly"
_PG_LIB = Path("/usr/lib/postgresql")
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL

# Development-box tuning. Durability settings stay at their safe defaults on purpose.
SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "100",
    "shared_buffers": "'256MB'",
    "work_mem": "'16MB'",
    "maintenance_work_mem": "'128MB'",
    "effective_cache_size": "'2GB'",
    "random_page_cost": "1.1",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_wal_size": "'1GB'",
    # A new WAL segment is created rather than recycled until checkpoints have old ones to reuse; filling
    # it with 16 MB of zeroes and fsyncing it held every commit behind it: at 10,000 events/s (a segment
    # every ~3 s) COMMITs took 40-50 ms each time (`log_min_duration_statement`, `perf trace` showing PG's
    # fsync of the new file at 31-38 ms). Without zero-filling, the file is extended as WAL is written and
    # each commit's fdatasync still makes it durable (the blocks and the size are flushed with the data).
    "wal_init_zero": "off",
    "jit": "off",
    "password_encryption": "'scram-sha-256'",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
    "logging_collector": "off",
}


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name)) or (0,)


def find_postgres_bin() -> Path | None:
    """The bin directory holding initdb and postgres: from PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = find_executable("initdb")
    if on_path is not None:
        return on_path.resolve().parent
    candidates = sorted(_PG_LIB.glob("*/bin/initdb"), key=_version_key)
    return candidates[-1].parent if candidates else None


def ensure_postgres() -> Path:
    """Make sure PostgreSQL's server binaries are installed (apt, when root); return their bin directory."""
    bin_dir = find_postgres_bin()
    if bin_dir is not None:
        return bin_dir
    if not running_as_root():
        raise ServiceError(
            "PostgreSQL server binaries (initdb, postgres) not found: install the Debian package "
            "`postgresql` (sudo apt-get install -y postgresql)"
        )
    apt_install("postgresql")
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise ServiceError("apt-get installed postgresql but initdb is still not found")
    return bin_dir


class PostgresServer(LocalServer):
    """A PostgreSQL cluster in `state_dir`, on 127.0.0.1:`port`, with a database `adnomaly`.

    Layout of `state_dir`: `data/` (PGDATA, created once by initdb), `run/` (the unix socket),
    `superuser.password` (0600), `port` (chosen once; an explicit `port` wins), `logs/postgres.log`.
    """

    stop_signal = signal.SIGINT  # fast shutdown: disconnect clients, checkpoint
    stop_leader_only = True  # the postmaster stops its backends itself
    start_timeout = 60.0

    def __init__(self, state_dir: Path, port: int | None = None) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = stored_port(self.state_dir / "port", port)
        self.service_user = SERVICE_USER if running_as_root() else None
        self._process: ManagedProcess | None = None

    # -- state -----------------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def password_file(self) -> Path:
        return self.state_dir / "superuser.password"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / "postgres.log"

    @property
    def password(self) -> str:
        if not self.password_file.exists():
            raise ServiceError(f"no superuser password file {self.password_file}")
        return self.password_file.read_text().strip()

    def dsn_for(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={SUPERUSER} password={self.password}"

    @property
    def dsn(self) -> str:
        """libpq conninfo for the `adnomaly` database as the superuser (psycopg.connect(server.dsn))."""
        return self.dsn_for(DATABASE)

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    # -- setup -----------------------------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        for directory in (self.socket_dir, self.log_path.parent):
            directory.mkdir(parents=True, exist_ok=True)
        socket_path = self.socket_dir / f".s.PGSQL.{self.port}"
        if len(str(socket_path).encode()) > _SOCKET_PATH_MAX:
            raise ServiceError(f"unix socket path {socket_path} is too long for the OS; use a shorter state dir")
        if self.service_user is None:
            return
        try:
            pwd.getpwnam(self.service_user)
        except KeyError:
            raise ServiceError(
                f"running as root needs the `{self.service_user}` system user: apt-get install -y postgresql"
            ) from None
        self.state_dir.chmod(0o711)
        chown_to(self.socket_dir, self.service_user)
        self.socket_dir.chmod(0o700)
        if not user_can_traverse(self.service_user, self.state_dir):
            blocking = next(
                (p for p in reversed(self.state_dir.parents) if not user_can_traverse(self.service_user, p)),
                self.state_dir,
            )
            raise ServiceError(
                f"PostgreSQL runs as the `{self.service_user}` user (it refuses root), which cannot reach "
                f"{self.state_dir}: {blocking} (mode {blocking.stat().st_mode & 0o777:o}) is not traversable "
                f"for it. Use a state dir under a reachable path (e.g. /var/tmp/adnomaly) or `chmod o+x` "
                f"the private parents."
            )

    def _initdb(self, bin_dir: Path) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            if not self.password_file.exists():
                raise ServiceError(f"{self.data_dir} is initialised but {self.password_file} is missing")
            return
        if self.data_dir.exists():  # a previous initdb died half-way: no usable cluster in there
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if not self.password_file.exists():
            write_private_file(self.password_file, generate_password() + "\n", owner=self.service_user)
        elif self.service_user:
            chown_to(self.password_file, self.service_user)
        if self.service_user:
            chown_to(self.data_dir, self.service_user)
        run_tool(
            [
                str(bin_dir / "initdb"),
                f"--pgdata={self.data_dir}",
                f"--username={SUPERUSER}",
                f"--pwfile={self.password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--data-checksums",
            ],
            f"initdb {self.data_dir}",
            user=self.service_user,
            cwd=self.state_dir,
            timeout=180,
        )

    def _write_config(self) -> None:
        settings = {**SETTINGS, "port": str(self.port), "unix_socket_directories": f"'{self.socket_dir}'"}
        lines = ["# Generated by adnomaly.services.postgres; rewritten on every start."]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        conf = self.data_dir / "adnomaly.conf"
        conf.write_text("\n".join(lines) + "\n")
        main_conf = self.data_dir / "postgresql.conf"
        include = "include = 'adnomaly.conf'"
        if include not in main_conf.read_text():
            with main_conf.open("a") as handle:
                handle.write(f"\n# Added by adnomaly: our settings win over the ones above.\n{include}\n")
        if self.service_user:
            chown_to(conf, self.service_user)

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """initdb (first time only), start the postmaster, wait for connections, create the database."""
        if self.running:
            return
        bin_dir = ensure_postgres()
        if port_open(self.port):
            raise ServiceError(f"PostgreSQL cannot start in {self.state_dir}: port {self.port} is in use")
        self._prepare_dirs()
        self._initdb(bin_dir)
        self._write_config()
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        self._process = ManagedProcess(
            name=f"postgres@{self.port}",
            argv=[str(bin_dir / "postgres"), "-D", str(self.data_dir)],
            log_path=self.log_path,
            env=env,
            cwd=self.state_dir,
            user=self.service_user,
        )
        self._process.start()
        try:
            self._process.wait_ready(self._accepts_connections, timeout=timeout)
            self._create_database()
        except BaseException:
            self.kill()
            raise

    def _accepts_connections(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            with psycopg.connect(self.dsn_for("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False  # e.g. "the database system is starting up" during crash recovery
        return True

    def _create_database(self) -> None:
        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))

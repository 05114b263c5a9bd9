"""Building blocks for running real services (Kafka, PostgreSQL, Redis, ...) as local processes.

Every service runs as a child process on a free loopback port, with its data and log under a state
directory, and is stopped (or killed, for fault tests) through `ManagedProcess`.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

CACHE_DIR = Path(os.environ.get("ADNOMALY_CACHE", Path.home() / ".cache" / "adnomaly"))

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A service could not be installed, started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stored_port(port_file: Path, requested: int | None = None) -> int:
    """A service's port, chosen once and kept in `port_file` so clients find it again after a restart; an
    explicitly `requested` port wins (and is kept)."""
    stored = int(port_file.read_text()) if port_file.exists() else None
    port = requested or stored or free_port()
    port_file.write_text(f"{port}\n")
    return port


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll `check` until it returns True; raise ServiceError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise ServiceError(f"timed out after {timeout:.0f}s waiting for {what}")


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def find_executable(name: str, extra_dirs: Sequence[Path] = ()) -> Path | None:
    for directory in extra_dirs:
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def running_as_root() -> bool:
    return os.geteuid() == 0


def as_user(argv: Sequence[str], user: str | None) -> list[str]:
    """`argv` wrapped to run as `user` (via setpriv) when we are root; unchanged otherwise."""
    if user and running_as_root():
        return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
    return list(argv)


def run_tool(
    argv: Sequence[str],
    what: str,
    *,
    user: str | None = None,
    timeout: float = 300.0,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run a one-shot command to completion; return its output or raise ServiceError with that output."""
    try:
        done = subprocess.run(
            as_user(argv, user),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=None if env is None else dict(env),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ServiceError(f"{what}: {exc.filename} not found") from None
    except subprocess.TimeoutExpired:
        raise ServiceError(f"{what}: timed out after {timeout:.0f}s ({' '.join(argv)})") from None
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise ServiceError(f"{what} failed with exit code {done.returncode}:\n{output[-4000:]}")
    return output


def _cached_binary(name: str, script: Path) -> Path:
    """Where `script` keeps (or will keep) the binary `name`: its `--print-bin` names the directory."""
    return Path(run_tool([str(script), "--print-bin"], f"locating {name}", timeout=30).strip()) / name


def built(name: str, script: Path, env_override: str) -> bool:
    """Whether `ensure_built` would return at once (the binary is cached, or `env_override` names one)."""
    if os.environ.get(env_override):
        return True
    return script.is_file() and _cached_binary(name, script).is_file()


def ensure_built(name: str, script: Path, env_override: str) -> Path:
    """The binary `name` that `script` (a tools/*/build.sh over tools/lib/gobuild.sh) builds and caches (its
    `--print-bin` names the directory), building it on first use; the environment variable `env_override`
    names another binary instead."""
    override = os.environ.get(env_override)
    if override:
        binary = Path(override)
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise ServiceError(f"{env_override}={binary} is not an executable file")
        return binary
    if not script.is_file():
        raise ServiceError(f"{script} not found; set {env_override} to a {name} binary")
    binary = _cached_binary(name, script)
    if not binary.is_file():
        log.info("building %s into %s (a first build can take minutes)", name, binary.parent)
        what = f"tools/{script.parent.name}/{script.name}"
        run_tool([str(script)], what, timeout=2 * 3600)
        if not binary.is_file():
            raise ServiceError(f"{what} ran but {binary} is still missing")
    return binary


def apt_install(*packages: str) -> None:
    """`apt-get install -y` as root (non-interactive); refreshes the package lists once if that fails."""
    if not running_as_root():
        raise ServiceError(f"installing {' '.join(packages)} needs root: sudo apt-get install -y {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    try:
        run_tool(install, f"apt-get install {' '.join(packages)}", env=env, timeout=900)
    except ServiceError:
        run_tool(["apt-get", "update", "-q"], "apt-get update", env=env, timeout=600)
        run_tool(install, f"apt-get install {' '.join(packages)}", env=env, timeout=900)


def generate_password(nbytes: int = 24) -> str:
    """A random password that is safe in URLs, conninfo strings and config files (no quoting needed)."""
    return secrets.token_urlsafe(nbytes)


def write_private_file(path: Path, text: str, owner: str | None = None) -> None:
    """Write `text` to `path` with mode 0600 from the start (never world-readable, not even briefly).

    `owner` (a user name) chowns the file to that user when we are root, for services that must read it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    if owner and running_as_root():
        entry = pwd.getpwnam(owner)
        os.chown(tmp, entry.pw_uid, entry.pw_gid)
    os.replace(tmp, path)


def chown_to(path: Path, user: str, recursive: bool = False) -> None:
    """chown `path` (and, if `recursive`, everything below it) to `user` and that user's group."""
    entry = pwd.getpwnam(user)
    paths = [path]
    if recursive:
        paths.extend(path.rglob("*"))
    for item in paths:
        os.chown(item, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def user_can_traverse(user: str, path: Path) -> bool:
    """Whether `user` can reach `path` (search permission on it and every parent), ACLs included."""
    try:
        subprocess.run(as_user(["test", "-x", str(path)], user), check=True, timeout=10)
    except subprocess.CalledProcessError:
        return False
    return True


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held while the block runs (serialises installers across processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded once: the pre-exec hook must not dlopen after fork


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the thread that started us dies, so a crashed or
    killed test run, benchmark or `adnomaly up` never leaves brokers and databases behind."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


@dataclass
class ManagedProcess:
    """One child process with its own log file, started in its own process group."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None  # run as this user (only when we are root); None = current user
    die_with_parent: bool = True  # start from a long-lived thread, or set False
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = as_user(self.argv, self.user)
        env = dict(os.environ if self.env is None else self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ServiceError(
                f"{self.name} exited with code {self.process.returncode}; last log lines:\n"
                f"{tail(self.log_path)}"
            )

    def wait_ready(self, check: Callable[[], bool], timeout: float = 60.0) -> None:
        def ready() -> bool:
            self.check_alive()
            return check()

        try:
            wait_until(ready, timeout, f"{self.name} to become ready")
        except ServiceError as exc:
            raise ServiceError(f"{exc}; last log lines:\n{tail(self.log_path)}") from None

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def stop(
        self, timeout: float = 30.0, sig: signal.Signals = signal.SIGTERM, leader_only: bool = False
    ) -> None:
        """Send `sig` to the process group, then SIGKILL it if it has not gone after `timeout` seconds.

        `leader_only` sends `sig` to the leader alone, for services that shut their children down
        themselves (PostgreSQL: SIGINT to a backend would merely cancel its query).
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            if leader_only:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, sig)
            else:
                self._signal_group(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=10)
        self._signal_group(signal.SIGKILL)  # stragglers in the group
        self.process = None

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash, for fault tests)."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None


class LocalServer:
    """What every local server (Kafka, PostgreSQL, Redis, MinIO) shares: one ManagedProcess in `_process`,
    stopped gracefully, killed like a crash, restarted, and used as a context manager.

    Subclasses implement `start(timeout)` (which sets `_process`) and `address`; they set `stop_signal` /
    `stop_leader_only` when the server wants another shutdown signal than SIGTERM to its process group, and
    `start_timeout` for `restart()`.
    """

    stop_signal: signal.Signals = signal.SIGTERM
    stop_leader_only: bool = False
    start_timeout: float = 60.0
    state_dir: Path
    _process: ManagedProcess | None = None

    def start(self, timeout: float = 60.0) -> None:
        raise NotImplementedError

    @property
    def address(self) -> str:
        """Where clients reach the server (host:port or URL), for messages."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful shutdown with `stop_signal`; SIGKILL if it takes longer than `timeout` seconds."""
        if self._process is not None:
            self._process.stop(timeout=timeout, sig=self.stop_signal, leader_only=self.stop_leader_only)
            self._process = None

    def kill(self) -> None:
        """SIGKILL the server's whole process group (a crash, for fault tests)."""
        if self._process is not None:
            self._process.kill()
            self._process = None

    def restart(self, timeout: float | None = None) -> None:
        self.stop()
        self.start(timeout=self.start_timeout if timeout is None else timeout)

    def __enter__(self) -> Self:
        self.start(timeout=self.start_timeout)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"{type(self).__name__}({self.address}, {state}, {self.state_dir})"

"""MinIO (an S3-compatible object store) as a local process, for the data lake.

The binary is compiled from MinIO's Go module by `tools/minio/build.sh` and cached under
`~/.cache/adnomaly/minio/<version>/bin/`; `ADNOMALY_MINIO_BIN` names another `minio` binary to use.

Each `MinioServer` runs `minio server` on 127.0.0.1 with its data under its own state directory. The root
credentials are generated once into a 0600 file in the state directory and handed to the child through
its environment (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD), never on its command line. The web console,
update checks and anonymous telemetry are off: the server talks to nothing but its clients on loopback.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from adnomaly.services.base import (
    LocalServer,
    ManagedProcess,
    ServiceError,
    built,
    ensure_built,
    free_port,
    port_open,
    stored_port,
    write_private_file,
)

if TYPE_CHECKING:
    from pyarrow.fs import S3FileSystem

log = logging.getLogger(__name__)

BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "tools" / "minio" / "build.sh"
BIN_ENV = "ADNOMALY_MINIO_BIN"
MC_BUILD_SCRIPT = BUILD_SCRIPT.with_name("mc-build.sh")
MC_BIN_ENV = "ADNOMALY_MC_BIN"
LOOPBACK = "127.0.0.1"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION = "us-east-1"


def minio_installed() -> bool:
    return built("minio", BUILD_SCRIPT, BIN_ENV)


def ensure_minio() -> Path:
    """The `minio` binary, building it first (tools/minio/build.sh) when it is not cached yet.

    `ADNOMALY_MINIO_BIN` overrides the location (no build is attempted then). A cold build compiles
    MinIO from source: about ten minutes on two cores; afterwards this returns at once.
    """
    return ensure_built("minio", BUILD_SCRIPT, BIN_ENV)


def ensure_minio_client() -> Path:
    """MinIO's client `mc` (tools/minio/mc-build.sh), static: the e2e suite's bucket Job runs it in a
    scratch image. `ADNOMALY_MC_BIN` overrides the location."""
    return ensure_built("mc", MC_BUILD_SCRIPT, MC_BIN_ENV)


class MinioServer(LocalServer):
    """`minio server` on 127.0.0.1:`port`, its data, credentials and log in `state_dir`.

    Layout of `state_dir`: `credentials.json` (0600: access and secret key, generated once), `port`
    (chosen once; an explicit `port` wins), `data/` (the single drive), `logs/minio.log`.
    """

    start_timeout = 60.0

    def __init__(self, state_dir: Path, port: int | None = None, *, binary: Path | None = None) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = stored_port(self.state_dir / "port", port)
        self._binary = binary
        self._process: ManagedProcess | None = None

    # -- where things are -------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def credentials_file(self) -> Path:
        return self.state_dir / "credentials.json"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / "minio.log"

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL, e.g. http://127.0.0.1:9123."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def region(self) -> str:
        return REGION

    def _credentials(self) -> dict[str, str]:
        if not self.credentials_file.exists():
            generated = {"access_key": f"adnomaly-{secrets.token_hex(6)}", "secret_key": secrets.token_urlsafe(30)}
            write_private_file(self.credentials_file, json.dumps(generated) + "\n")
        stored = json.loads(self.credentials_file.read_text())
        return {"access_key": str(stored["access_key"]), "secret_key": str(stored["secret_key"])}

    @property
    def access_key(self) -> str:
        return self._credentials()["access_key"]

    @property
    def secret_key(self) -> str:
        return self._credentials()["secret_key"]

    # -- lifecycle --------------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        credentials = self._credentials()
        env = {key: value for key, value in os.environ.items() if not key.startswith(("MINIO_", "AWS_"))}
        env.update(
            MINIO_ROOT_USER=credentials["access_key"],
            MINIO_ROOT_PASSWORD=credentials["secret_key"],
            MINIO_BROWSER="off",  # no web console
            MINIO_UPDATE="off",  # never look for a newer release
            MINIO_CALLHOME_ENABLE="off",
            MINIO_SCANNER_SPEED="slowest",  # background healing/lifecycle scans: not needed, costs CPU
            MINIO_REGION=REGION,
        )
        return env

    @property
    def address(self) -> str:
        return self.endpoint

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until its liveness and readiness probes answer 200."""
        if self.running:
            return
        binary = self._binary or ensure_minio()
        if port_open(self.port):
            raise ServiceError(f"MinIO cannot start in {self.state_dir}: port {self.port} is in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        console_port = free_port()
        self._process = ManagedProcess(
            name=f"minio@{self.port}",
            argv=[
                str(binary), "server", "--quiet", "--json",
                "--address", f"{LOOPBACK}:{self.port}",
                "--console-address", f"{LOOPBACK}:{console_port}",
                str(self.data_dir),
            ],
            log_path=self.log_path,
            env=self._environment(),
            cwd=self.state_dir,
        )  # fmt: skip
        self._process.start()
        try:
            self._process.wait_ready(self._ready, timeout=timeout)
        except BaseException:
            self.kill()
            raise
        log.debug("MinIO ready at %s (pid %s)", self.endpoint, self.pid)

    def _ready(self) -> bool:
        if not port_open(self.port):
            return False
        return all(_http_ok(f"{self.endpoint}/minio/health/{probe}") for probe in ("live", "ready"))


    # -- S3 ---------------------------------------------------------------------------------------------

    def filesystem(self) -> S3FileSystem:
        """A pyarrow S3 filesystem for this server with its root credentials (pyarrow is imported lazily)."""
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=self.access_key, secret_key=self.secret_key, endpoint_override=self.endpoint,
            scheme="http", region=REGION, allow_bucket_creation=True, allow_bucket_deletion=True,
            connect_timeout=2, request_timeout=10,
        )  # fmt: skip

    def make_bucket(self, name: str) -> None:
        """Create bucket `name` (nothing happens when it exists already)."""
        if not _BUCKET_NAME.match(name) or ".." in name:
            raise ValueError(f"invalid bucket name {name!r}: 3-63 of a-z, 0-9, '.', '-', starting and ending "
                             "with a letter or digit")
        if not self.running:
            raise ServiceError(f"MinIO is not running ({self.state_dir})")
        from pyarrow import fs

        s3 = self.filesystem()
        if s3.get_file_info(name).type == fs.FileType.Directory:
            return
        s3.create_dir(name)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False

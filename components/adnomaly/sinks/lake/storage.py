"""Where the lake's files are written: an S3 bucket (MinIO or any S3) or a local directory.

Both write whole files atomically: an S3 PUT (or multipart upload) makes the object visible only once
complete; a local file is written under a hidden temporary name, fsynced and renamed into place. Writing
a name again replaces the file, which is what makes a replayed flush harmless. Every failure is an
OSError (pyarrow raises OSError for S3 errors too); the sink retries it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from pyarrow import fs


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str


def s3_filesystem(
    endpoint: str | None, region: str, credentials: S3Credentials | None, *, timeout_s: float = 10.0
) -> fs.S3FileSystem:
    """A pyarrow S3 filesystem; `endpoint` like http://127.0.0.1:9000 (None: AWS itself)."""
    options: dict[str, object] = {
        "region": region,
        "connect_timeout": min(timeout_s, 3.0),
        "request_timeout": timeout_s,
        "allow_bucket_creation": True,
        # one attempt per call: the sink retries whole uploads with its own back-off while paused
        "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=1),
    }
    if credentials is not None:
        options.update(access_key=credentials.access_key, secret_key=credentials.secret_key)
    if endpoint:
        scheme, _, address = endpoint.partition("://")
        if not address:
            scheme, address = "https", endpoint
        options.update(endpoint_override=address, scheme=scheme)
    return fs.S3FileSystem(**options)  # type: ignore[arg-type]


class LakeStore:
    """Writes files under a table root: `s3://bucket/prefix` or `file:///absolute/path`."""

    def __init__(
        self,
        uri: str,
        *,
        endpoint: str | None = None,
        region: str = "us-east-1",
        credentials: S3Credentials | None = None,
    ) -> None:
        self.uri = uri.rstrip("/")
        if self.uri.startswith("file://"):
            self._local: Path | None = Path(self.uri.removeprefix("file://"))
            self._s3: fs.S3FileSystem | None = None
            self._root = str(self._local)
        elif self.uri.startswith("s3://"):
            self._local = None
            self._s3 = s3_filesystem(endpoint, region, credentials)
            self._root = self.uri.removeprefix("s3://")
        else:
            raise ValueError(f"unsupported lake URI {uri!r}: use s3://bucket/prefix or file:///path")

    @property
    def filesystem(self) -> fs.FileSystem:
        """A pyarrow filesystem to read the lake back with (pyarrow.dataset, DuckDB, ...)."""
        return self._s3 if self._s3 is not None else fs.LocalFileSystem()

    @property
    def root(self) -> str:
        """The table root as a path on `filesystem` (`bucket/prefix` or `/data/lake/...`)."""
        return self._root

    def ensure(self) -> None:
        """Create the bucket or the root directory when missing."""
        if self._local is not None:
            self._local.mkdir(parents=True, exist_ok=True)
            return
        assert self._s3 is not None
        bucket = self._root.split("/", 1)[0]
        if self._s3.get_file_info(bucket).type == fs.FileType.NotFound:
            self._s3.create_dir(bucket)

    def put(self, relative_path: str, data: bytes) -> None:
        """Write (or replace) one file at `<root>/<relative_path>`, atomically."""
        if self._local is not None:
            _write_local(self._local / relative_path, data)
            return
        assert self._s3 is not None
        with self._s3.open_output_stream(f"{self._root}/{relative_path}") as stream:
            stream.write(data)

    def list_files(self) -> list[str]:
        """Every file's path relative to the root (for tests and benchmarks), sorted."""
        filesystem = self.filesystem
        selector = fs.FileSelector(self._root, recursive=True, allow_not_found=True)
        prefix = self._root.rstrip("/") + "/"
        return sorted(
            info.path.removeprefix(prefix)
            for info in filesystem.get_file_info(selector)
            if info.type == fs.FileType.File
        )


def _write_local(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)

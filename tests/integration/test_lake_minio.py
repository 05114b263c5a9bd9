"""The local MinIO service (adnomaly.services.minio): built from its Go module, credentials kept out of
command lines, data kept across restarts, crash (kill) and restart on the same port."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from adnomaly.services.minio import MinioServer
from adnomaly.sinks.lake.storage import LakeStore, S3Credentials

pytestmark = pytest.mark.integration


def test_minio_credentials_restart_and_buckets(tmp_path: Path) -> None:
    server = MinioServer(tmp_path / "minio")
    try:
        server.start()
        assert server.endpoint.startswith("http://127.0.0.1:")
        mode = stat.S_IMODE(server.credentials_file.stat().st_mode)
        assert mode == 0o600
        assert server.pid is not None
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode(errors="replace")
        assert server.secret_key not in cmdline and server.access_key not in cmdline
        assert server.secret_key not in server.log_path.read_text()

        server.make_bucket("lake-data")
        server.make_bucket("lake-data")  # exists already: nothing happens
        with pytest.raises(ValueError, match="invalid bucket name"):
            server.make_bucket("x")
        store = LakeStore("s3://lake-data/t", endpoint=server.endpoint,
                          credentials=S3Credentials(server.access_key, server.secret_key))  # fmt: skip
        store.put("dt=2026-01-01/a.parquet", b"one")

        wrong = LakeStore("s3://lake-data/t", endpoint=server.endpoint, credentials=S3Credentials("nobody", "x" * 12))
        with pytest.raises(OSError):
            wrong.put("dt=2026-01-01/b.parquet", b"two")

        port, access_key = server.port, server.access_key
        server.kill()
        with pytest.raises(OSError):
            store.put("dt=2026-01-01/c.parquet", b"three")
        again = MinioServer(tmp_path / "minio")  # same state dir: same port, credentials and data
        server = again
        again.start()
        assert (again.port, again.access_key) == (port, access_key)
        assert store.list_files() == ["dt=2026-01-01/a.parquet"]
        store.put("dt=2026-01-01/c.parquet", b"three")
        again.restart()
        assert store.list_files() == ["dt=2026-01-01/a.parquet", "dt=2026-01-01/c.parquet"]
    finally:
        server.stop()

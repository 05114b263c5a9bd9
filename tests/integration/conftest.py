"""Real local services for integration tests: Kafka (KRaft), PostgreSQL and Redis as child processes.

Fixtures
--------
- `kafka`, `postgres`, `redis` (session): one shared instance each. Do not stop or kill them in a test.
- `make_kafka`, `make_postgres`, `make_redis` (function): factories for private instances, for tests that
  kill, stop or restart a service. `make_kafka()` returns a started KafkaBroker (`start=False` to get it
  stopped); each instance gets a fresh state dir and is stopped at teardown.
- `topic_factory` (function): `topic_factory(partitions=1, config=None)` creates a uniquely named topic on
  the shared broker and returns its name; the topics are deleted at teardown.

Every test under tests/integration is marked `integration` (hook below). Every service is registered for
stopping before it starts, through finalizers (run on failures too) and, as a last resort, atexit; SIGTERM
is turned into KeyboardInterrupt so that a terminated run still tears down.

State dirs live under pytest's tmp_path_factory, except PostgreSQL's when we run as root: PostgreSQL then
runs as the `postgres` user, which must traverse to its state dir, so those live in a 0711 directory of
their own outside pytest's 0700 tree (see `_postgres_root`). Nothing becomes listable; the password file
stays 0600.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from adnomaly.kafka_client import TopicSettings, admin_client, ensure_topics
from adnomaly.services.base import running_as_root
from adnomaly.services.kafka import KafkaBroker
from adnomaly.services.postgres import PostgresServer
from adnomaly.services.redis import RedisServer

from tests.integration.component_process import ComponentProcess

_HERE = Path(__file__).resolve().parent


class _Service(Protocol):
    @property
    def running(self) -> bool: ...

    def stop(self, timeout: float = ...) -> None: ...

    def kill(self) -> None: ...


_started: list[_Service] = []


@atexit.register
def _kill_leftovers() -> None:
    """Last resort if finalizers did not run (e.g. pytest itself crashed): nothing stays running."""
    for service in _started:
        with contextlib.suppress(Exception):
            service.kill()


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (CI timeout, `kill`) would end pytest without finalizers or atexit, leaving the services
    # (each in its own session) running: turn it into a KeyboardInterrupt, which pytest unwinds cleanly.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _register(request: pytest.FixtureRequest, service: _Service) -> None:
    """Stop `service` at teardown; registered before start so a failed start is cleaned up too."""
    _started.append(service)

    def finalize() -> None:
        service.stop()
        with contextlib.suppress(ValueError):
            _started.remove(service)

    request.addfinalizer(finalize)


_POSTGRES_ROOT: list[Path] = []


def _postgres_root() -> Path:
    """A directory outside pytest's temp tree, traversable by the `postgres` user (removed at exit).

    pytest makes pytest-of-<user> 0700 again whenever another pytest session starts, which would cut
    PostgreSQL (running as `postgres` when we are root) off from a state dir inside it.
    """
    if not _POSTGRES_ROOT:
        root = Path(tempfile.mkdtemp(prefix="adnomaly-test-postgres-"))
        root.chmod(0o711)
        atexit.register(shutil.rmtree, root, True)
        _POSTGRES_ROOT.append(root)
    return _POSTGRES_ROOT[0]


def _state_dir(factory: pytest.TempPathFactory, name: str, for_postgres: bool = False) -> Path:
    if for_postgres and running_as_root():
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_postgres_root()))
        path.chmod(0o711)
        return path
    return factory.mktemp(name)


# -- shared instances ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> KafkaBroker:
    broker = KafkaBroker(_state_dir(tmp_path_factory, "kafka"))
    _register(request, broker)
    broker.start()
    return broker


@pytest.fixture(scope="session")
def postgres(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PostgresServer:
    server = PostgresServer(_state_dir(tmp_path_factory, "postgres", for_postgres=True))
    _register(request, server)
    server.start()
    return server


@pytest.fixture(scope="session")
def redis(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    server = RedisServer(_state_dir(tmp_path_factory, "redis"))
    _register(request, server)
    server.start()
    return server


# -- private instances -----------------------------------------------------------------------------------


@pytest.fixture
def make_kafka(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., KafkaBroker]:
    def make(*, start: bool = True, **kwargs: Any) -> KafkaBroker:
        broker = KafkaBroker(_state_dir(tmp_path_factory, "kafka-private"), **kwargs)
        _register(request, broker)
        if start:
            broker.start()
        return broker

    return make


@pytest.fixture
def make_postgres(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., PostgresServer]:
    def make(*, start: bool = True, **kwargs: Any) -> PostgresServer:
        server = PostgresServer(_state_dir(tmp_path_factory, "postgres-private", for_postgres=True), **kwargs)
        _register(request, server)
        if start:
            server.start()
        return server

    return make


@pytest.fixture
def make_redis(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., RedisServer]:
    def make(*, start: bool = True, **kwargs: Any) -> RedisServer:
        server = RedisServer(_state_dir(tmp_path_factory, "redis-private"), **kwargs)
        _register(request, server)
        if start:
            server.start()
        return server

    return make


# -- topics ----------------------------------------------------------------------------------------------


def unique_topic_name(hint: str = "t") -> str:
    """A valid, unique Kafka topic name containing `hint` (e.g. the test's name)."""
    cleaned = re.sub(r"[^a-zA-Z0-9._-]+", "-", hint).strip("-.")[:100] or "t"
    return f"{cleaned}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topic_factory(request: pytest.FixtureRequest, kafka: KafkaBroker) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def make(partitions: int = 1, config: dict[str, str] | None = None, name: str | None = None) -> str:
        topic = name or unique_topic_name(request.node.name)
        ensure_topics(kafka.bootstrap_servers, {topic: TopicSettings(partitions, config=config or {})})
        created.append(topic)
        return topic

    yield make
    if created and kafka.running:
        futures = admin_client(kafka.bootstrap_servers).delete_topics(created, request_timeout=15)
        for future in futures.values():
            with contextlib.suppress(Exception):
                future.result(timeout=15)


@pytest.fixture
def sinks() -> Iterator[list[ComponentProcess]]:
    """Component processes a test appends here are stopped at teardown (also when the test fails)."""
    started: list[ComponentProcess] = []
    yield started
    for sink in started:
        sink.process.stop(timeout=10)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state directory for `adnomaly up`, not under pytest's 0700 tmp tree: PostgreSQL runs as the `postgres`
    user when tests run as root."""
    path = Path(tempfile.mkdtemp(prefix="adnomaly-up-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)

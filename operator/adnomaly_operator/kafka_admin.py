"""The Admin API side of `manageTopics`: describe, create, grow, alter and delete topics on an external
Kafka with confluent-kafka's AdminClient. Thin: what to do is decided by `topics.decide_topics`.

Blocking (librdkafka futures with timeouts): the reconciler runs these in a worker thread. The login is
the external Kafka's credentials Secret (`KafkaAdminPlan.credentials`, read by the reconciler); it goes
into the client config through the same `security_settings` the components use (default mechanism
SCRAM-SHA-512, PLAINTEXT/SSL turned into their SASL forms), whose `ClientConfig` hides the password in
its repr, and every message leaving this module is scrubbed of it. librdkafka's own log lines go to the
`adnomaly_operator.kafka` logger; they name brokers, never credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from adnomaly.config import SecretEnv
from adnomaly.kafka_client import KafkaAdminError, KafkaSecurityError, admin_config
from adnomaly.plan import TopicPlan
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from adnomaly_operator.desired import KafkaAdminPlan
from adnomaly_operator.topics import (
    CREDENTIALS_MISSING,
    KAFKA_AUTH_FAILED,
    KAFKA_UNREACHABLE,
    TOPICS_FAILED,
    ExistingTopic,
    TopicDecision,
    decide_topics,
)

log = logging.getLogger(__name__)
KAFKA_LOG = logging.getLogger("adnomaly_operator.kafka")
DEFAULT_TIMEOUT = 10.0

_AUTH_CODES = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})
_UNREACHABLE_CODES = frozenset({
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._RESOLVE,
    KafkaError.REQUEST_TIMED_OUT, KafkaError.BROKER_NOT_AVAILABLE, KafkaError.NETWORK_EXCEPTION,
})  # fmt: skip


class TopicAdminError(KafkaAdminError):
    """A topic operation failed; `reason` is the TopicsReady condition's reason. The message holds no secret."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Login:
    """A SASL login read from the credentials Secret (the password never shows in a repr)."""

    username: str
    password: str = field(repr=False)


def client_config(
    bootstrap: str, security_protocol: str, login: Login | None, **overrides: Any
) -> dict[str, Any]:
    """The AdminClient's config: the components' security conventions, fed with the Secret's values."""
    env = {SecretEnv.KAFKA_USERNAME: login.username, SecretEnv.KAFKA_PASSWORD: login.password} if login else {}
    try:
        return admin_config(bootstrap, env=env, security_protocol=security_protocol, **overrides)
    except KafkaSecurityError as exc:  # names variables, never values
        raise TopicAdminError(CREDENTIALS_MISSING, f"cannot log in to Kafka: {exc}") from None


def _code(exc: BaseException) -> int | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return int(exc.args[0].code())
    return None


class TopicAdmin:
    """One AdminClient on the external Kafka (created per sync: the login may have changed)."""

    def __init__(self, plan: KafkaAdminPlan, login: Login | None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._bootstrap = plan.bootstrap
        self._secrets = tuple(s for s in (login.password if login else None,) if s)
        self._timeout = timeout
        self._errors: list[KafkaError] = []
        config = client_config(
            # librdkafka repeats a failing connect or login every few hundred ms: only critical lines reach the
            # log; errors arrive through error_cb and end up, once, in the TopicsReady condition.
            plan.bootstrap, plan.security_protocol, login, error_cb=self._errors.append, logger=KAFKA_LOG, log_level=2,
            socket_connection_setup_timeout_ms=int(timeout * 1000),
        )
        self._admin = AdminClient(config)

    # -- helpers --

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def _failed(self, what: str, exc: BaseException) -> TopicAdminError:
        """Classify a failure: unreachable broker, failed login, or an operation the broker refused."""
        self._admin.poll(0.1)  # serve error_cb: a failed login shows there, not in the request's error
        codes = {e.code() for e in self._errors} | ({_code(exc)} - {None})
        last = f" (last client error: {self._errors[-1].str()})" if self._errors else ""
        if codes & _AUTH_CODES:
            reason, text = KAFKA_AUTH_FAILED, f"Kafka at {self._bootstrap} refused the login: {what}: {exc}{last}"
        elif _code(exc) in _UNREACHABLE_CODES or (_code(exc) is None and not isinstance(exc, KafkaException)):
            reason, text = KAFKA_UNREACHABLE, f"no Kafka broker answered at {self._bootstrap}: {what}: {exc}{last}"
        else:
            reason, text = TOPICS_FAILED, f"{what}: {exc}"
        return TopicAdminError(reason, self._scrub(text))

    def _results(self, what: str, futures: dict[Any, Any], ignore: Iterable[int] = ()) -> list[str]:
        """Wait for every future; returns the failures' messages (codes in `ignore` are not failures)."""
        skip = set(ignore)
        failed: list[str] = []
        for item, future in futures.items():
            name = getattr(item, "name", None) or getattr(item, "topic", None) or str(item)
            try:
                future.result(timeout=self._timeout + 5)
            except KafkaException as exc:
                if _code(exc) in skip:
                    continue
                if _code(exc) in _UNREACHABLE_CODES | _AUTH_CODES:
                    raise self._failed(f"{what} {name}", exc) from None
                failed.append(f"{what} {name}: {exc}")
            except TimeoutError as exc:
                raise self._failed(f"{what} {name}", exc) from None
        return failed

    # -- reads --

    def describe(self, names: Iterable[str], config_keys: Iterable[str] = ()) -> dict[str, ExistingTopic]:
        """The named topics that exist: partitions, replication factor and the values of `config_keys`."""
        wanted = set(names)
        try:
            metadata = self._admin.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise self._failed("listing topics", exc) from None
        found = {
            name: meta for name, meta in metadata.topics.items()
            if name in wanted and meta.error is None and meta.partitions
        }  # fmt: skip
        keys = set(config_keys)
        configs: dict[str, dict[str, str]] = {name: {} for name in found}
        if keys and found:
            resources = [ConfigResource(ResourceType.TOPIC, name) for name in sorted(found)]
            for resource, future in self._admin.describe_configs(resources, request_timeout=self._timeout).items():
                try:
                    entries = future.result(timeout=self._timeout + 5)
                except (KafkaException, TimeoutError) as exc:
                    raise self._failed(f"describing the config of topic {resource.name}", exc) from None
                configs[resource.name] = {k: str(e.value) for k, e in entries.items() if k in keys}
        return {
            name: ExistingTopic(
                name, len(meta.partitions), max(len(p.replicas) for p in meta.partitions.values()), configs[name]
            )
            for name, meta in found.items()
        }

    # -- writes --

    def apply(self, decision: TopicDecision) -> None:
        """Execute a decision (never a blocked one). Raises TopicAdminError naming what failed."""
        if decision.blocked:
            raise ValueError("a blocked decision applies nothing")
        failed: list[str] = []
        timeout = self._timeout
        if decision.creates:
            new = [NewTopic(t.name, num_partitions=t.partitions, replication_factor=t.replicas, config=dict(t.config))
                   for t in decision.creates]  # fmt: skip
            created = self._admin.create_topics(new, request_timeout=timeout)
            # already there: created meanwhile, or metadata lagged; the next sync compares it with the plan
            failed += self._results("creating topic", created, ignore=(KafkaError.TOPIC_ALREADY_EXISTS,))
        if decision.increases:
            grow = [NewPartitions(i.topic, i.desired) for i in decision.increases]
            grown = self._admin.create_partitions(grow, request_timeout=timeout)
            failed += self._results("adding partitions to", grown)
        if decision.config_changes:
            resources = [
                ConfigResource(ResourceType.TOPIC, c.topic, incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in c.values
                ])
                for c in decision.config_changes
            ]  # fmt: skip
            altered = self._admin.incremental_alter_configs(resources, request_timeout=timeout)
            failed += self._results("updating the config of topic", altered)
        if failed:
            raise TopicAdminError(TOPICS_FAILED, self._scrub("; ".join(failed)))

    def delete(self, names: Iterable[str]) -> list[str]:
        """Delete the named topics that exist; returns those deleted."""
        present = sorted(self.describe(names))
        if not present:
            return []
        futures = self._admin.delete_topics(present, request_timeout=self._timeout)
        failed = self._results("deleting topic", futures, ignore=(KafkaError.UNKNOWN_TOPIC_OR_PART,))
        if failed:
            raise TopicAdminError(TOPICS_FAILED, self._scrub("; ".join(failed)))
        return present


AdminFactory = Callable[[KafkaAdminPlan, "Login | None"], TopicAdmin]


def config_keys(topics: Sequence[TopicPlan]) -> set[str]:
    return {key for t in topics for key in t.config}


def sync_topics(admin: TopicAdmin, topics: Sequence[TopicPlan]) -> TopicDecision:
    """Describe → decide (pure) → apply; a blocked decision (partition decrease) applies nothing."""
    existing = admin.describe([t.name for t in topics], config_keys(topics))
    decision = decide_topics(topics, existing)
    if not decision.blocked and decision.changes:
        admin.apply(decision)
    return decision


def delete_topics(admin: TopicAdmin, topics: Sequence[TopicPlan]) -> list[str]:
    return admin.delete([t.name for t in topics])

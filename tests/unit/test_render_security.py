"""Security properties of everything the operator renders for a full-featured Pipeline: Kafka users and
least-privilege ACLs, pod hardening, default-deny NetworkPolicies (checked with a small policy evaluator),
secrets only in Secrets, and the Flink job as the real PyFlink application."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from adnomaly.config import SecretEnv
from adnomaly.features.sql import compile_job
from adnomaly.plan import events_config
from adnomaly.spec import Pipeline, parse_pipeline
from adnomaly_operator.desired import KubePlan, flink_job_options, kube_plan
from adnomaly_operator.names import LABEL_PIPELINE
from adnomaly_operator.reconcile import generate_secret_data
from adnomaly_operator.render import Desired, Owner, RenderContext, render

from tests.operator.pod_security import hardening_problems

NS = "team-a"
NAME = "clickstream"
FULL_SPEC: dict[str, Any] = {
    "source": {"generator": {"eventsPerSecond": 10}, "ingest": {"replicas": 2}},
    "features": [{
        "name": "traffic", "dimensions": ["geo"], "window": {"type": "hopping", "size": "5m", "slide": "1m"},
        "metrics": [{"name": "ctr", "agg": "avg", "field": "CTR"}],
    }],
    "detection": {"detectors": [{"name": "spike", "feature": "traffic", "metric": "ctr", "robustZScore": {}}]},
    "components": {"processor": {"replicas": 2, "resources": {"requests": {"memory": "1Gi"}}}},
    "observability": {"tracing": {"otlpEndpoint": "http://otel-collector.monitoring:4317"}},
}
EXTERNAL_SPEC: dict[str, Any] = {
    **FULL_SPEC,
    "kafka": {"external": {"bootstrapServers": "kafka.example.com:9096", "securityProtocol": "SASL_SSL",
                           "credentialsSecretRef": {"name": "kafka-creds"}}},
    "storage": {"postgres": {"external": {"dsnSecretRef": {"name": "pg-dsn"}}}},
    "featureStore": {"redis": {"external": {"urlSecretRef": {"name": "redis-url"}}}},
    "detection": {**FULL_SPEC["detection"], "notify": {"alertmanager": {
        "url": "https://alertmanager.example.com:9443", "credentialsSecretRef": {"name": "am-login"}}}},
}


def pipeline(spec: dict[str, Any], name: str = NAME) -> Pipeline:
    return parse_pipeline({"apiVersion": "adnomaly.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
                           "spec": spec})


def rendered(spec: dict[str, Any] = FULL_SPEC) -> tuple[KubePlan, list[Desired]]:
    p = pipeline(spec)
    kp = kube_plan(p, NS)
    return kp, render(kp, RenderContext(Owner("adnomaly.io/v1alpha1", "Pipeline", p.name, "uid-1")))


def of_kind(items: list[Desired], kind: str) -> dict[str, dict[str, Any]]:
    return {d.name: d.obj for d in items if d.kind == kind}


# --- 1. Kafka: SCRAM users with least-privilege ACLs ---------------------------------------------------------


def test_managed_kafka_authenticates_every_listener_and_authorizes_every_request() -> None:
    _, items = rendered()
    (kafka,) = of_kind(items, "Kafka").values()
    spec = kafka["spec"]["kafka"]
    assert spec["authorization"] == {"type": "simple"}
    listeners = {listener["name"]: listener for listener in spec["listeners"]}
    assert listeners["plain"]["tls"] is False and listeners["tls"]["tls"] is True
    for listener in spec["listeners"]:  # no anonymous listener at all
        assert listener["authentication"] == {"type": "scram-sha-512"}, listener
    assert "userOperator" in kafka["spec"]["entityOperator"]  # it turns KafkaUsers into SCRAM credentials


def acl_table(user: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(resource type, name, pattern, operation) for every allow rule of a KafkaUser."""
    return {
        (acl["resource"]["type"], acl["resource"]["name"], acl["resource"]["patternType"], op)
        for acl in user["spec"]["authorization"]["acls"] if acl.get("type", "allow") == "allow"
        for op in acl["operations"]
    }


# Read and Write imply Describe in Kafka: no rule grants more than these.
def reads(topic: str) -> set[tuple[str, str, str, str]]:
    return {("topic", topic, "literal", "Read")}


def writes(topic: str) -> set[tuple[str, str, str, str]]:
    return {("topic", topic, "literal", "Write")}


def group(group_id: str) -> set[tuple[str, str, str, str]]:
    return {("group", group_id, "literal", "Read")}


def test_each_kafka_client_has_its_own_user_with_exactly_the_access_it_needs() -> None:
    kp, items = rendered()
    users = of_kind(items, "KafkaUser")
    topics = kp.plan.topics
    raw, dlq, features, anomalies = (topics[r].name for r in ("raw", "dlq", "features", "anomalies"))
    config = {name: cp.config for name, cp in kp.components.items()}
    assert kp.features is not None
    detector = config["detector"].detector
    assert detector is not None and config["processor"].processor is not None
    assert config["lake-sink"].lake is not None and config["feature-sink"].feature_sink is not None
    expected = {
        "generator": writes(raw),
        "ingest": writes(raw) | writes(dlq),
        "processor": reads(raw) | group(config["processor"].processor.group_id) | writes(dlq),
        "lake-sink": reads(raw) | group(config["lake-sink"].lake.group_id),
        "feature-sink": reads(features) | group(config["feature-sink"].feature_sink.group_id),
        "detector": reads(features) | group(detector.group_id) | writes(anomalies)
        | {("transactionalId", detector.transactional_id, "literal", "Write")},
        "features": reads(raw) | writes(features)
        | {acl for g in kp.features.consumer_groups for acl in group(g)}
        | {("transactionalId", prefix, "prefix", "Write") for prefix in kp.features.transactional_id_prefixes},
    }
    assert sorted(users) == sorted(f"{NAME}-{c}-kafka" for c in expected)  # serving does not use Kafka
    for component, table in expected.items():
        user = users[f"{NAME}-{component}-kafka"]
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == NAME
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        assert acl_table(user) == table, component
    # the issue's example, spelled out: the processor reads raw and writes the DLQ, and nothing else
    processor = acl_table(users[f"{NAME}-processor-kafka"])
    assert {(t, n) for t, n, _, _ in processor} == {("topic", raw), ("topic", dlq), ("group", f"{NAME}-processor")}
    assert {op for t, n, _, op in processor if n == raw} == {"Read"}
    assert {op for t, n, _, op in processor if n == dlq} == {"Write"}
    assert not any(t == "cluster" or op == "All" for user in users.values() for t, _, _, op in acl_table(user))


def container_env(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = obj["spec"]
    pod = spec["template"]["spec"] if "template" in spec else spec["podTemplate"]["spec"]
    return {e["name"]: e for e in pod["containers"][0].get("env", [])}


def test_kafka_clients_get_their_own_credentials_from_strimzis_secret() -> None:
    kp, items = rendered()
    clients = {**of_kind(items, "Deployment"), **of_kind(items, "FlinkDeployment")}
    for name, obj in clients.items():
        component = name.removeprefix(f"{NAME}-")
        env = container_env(obj)
        if component == "serving":
            assert not any(k.startswith("ADNOMALY_KAFKA_") for k in env), "serving has no Kafka user"
            continue
        user = f"{NAME}-{component}-kafka"
        assert env["ADNOMALY_KAFKA_USERNAME"] == {"name": "ADNOMALY_KAFKA_USERNAME", "value": user}
        assert env["ADNOMALY_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": user, "key": "password"}
        assert env["ADNOMALY_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
        assert env["ADNOMALY_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_PLAINTEXT"
    configs = of_kind(items, "ConfigMap")[f"{NAME}-config"]["data"]
    for component in kp.components:
        assert json.loads(configs[f"{component}.json"])["kafka"]["security_protocol"] == "SASL_PLAINTEXT"


def test_external_kafka_keeps_the_users_credentials_and_gets_no_kafka_users() -> None:
    kp, items = rendered(EXTERNAL_SPEC)
    assert not of_kind(items, "KafkaUser") and not of_kind(items, "Kafka")
    for name, obj in of_kind(items, "Deployment").items():
        env = container_env(obj)
        if name.endswith("-serving"):
            continue
        assert env["ADNOMALY_KAFKA_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "kafka-creds",
                                                                               "key": "username"}
        assert env["ADNOMALY_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "kafka-creds",
                                                                               "key": "password"}
    assert kp.components["processor"].config.kafka.security_protocol == "SASL_SSL"


# --- 3. every pod hardened ------------------------------------------------------------------------------------

POD_KINDS = {"Deployment", "StatefulSet", "Job", "FlinkDeployment", "KafkaNodePool", "Kafka"}
NO_POD_KINDS = {"ConfigMap", "Secret", "Service", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy", "Role",
                "RoleBinding", "KafkaTopic", "KafkaUser", "ServiceMonitor"}


def pod_specs(items: list[Desired]) -> dict[str, dict[str, Any]]:
    """Every pod spec the rendered objects make run (Strimzi's and the Flink operator's templates as the pods
    they become: the container settings they merge in)."""
    pods: dict[str, dict[str, Any]] = {}
    for d in items:
        spec = d.obj.get("spec", {})
        where = f"{d.kind}/{d.name}"
        if d.kind in ("Deployment", "StatefulSet", "Job"):
            pods[where] = spec["template"]["spec"]
        elif d.kind == "FlinkDeployment":
            template = spec["podTemplate"]["spec"]
            for role in ("jobManager", "taskManager"):
                resource = spec[role]["resource"]  # the Flink operator sets requests = limits from these
                quantities = {"cpu": str(resource["cpu"]), "memory": resource["memory"]}
                containers = [{**c, "resources": {"requests": quantities, "limits": quantities}}
                              for c in template["containers"]]
                pods[f"{where}/{role}"] = {**template, "containers": containers}
        elif d.kind == "KafkaNodePool":
            t = spec["template"]
            pods[where] = {"securityContext": t["pod"]["securityContext"], "containers": [
                {"name": "kafka", **t["kafkaContainer"], "resources": spec["resources"]},
            ], "initContainers": [{"name": "kafka-init", **t["initContainer"], "resources": spec["resources"]}]}
        elif d.kind == "Kafka":
            eo = spec["entityOperator"]
            pods[f"{where}/entity-operator"] = {"securityContext": eo["template"]["pod"]["securityContext"],
                                                "containers": [
                {"name": "topic-operator", **eo["template"]["topicOperatorContainer"],
                 "resources": eo["topicOperator"]["resources"]},
                {"name": "user-operator", **eo["template"]["userOperatorContainer"],
                 "resources": eo["userOperator"]["resources"]},
            ]}
    return pods


def test_every_rendered_pod_is_non_root_read_only_without_capabilities_and_limited() -> None:
    _, items = rendered()
    kinds = {d.kind for d in items}
    assert kinds <= POD_KINDS | NO_POD_KINDS, f"new kinds: classify them: {kinds - POD_KINDS - NO_POD_KINDS}"
    pods = pod_specs(items)
    expected = {f"Deployment/{NAME}-{c}" for c in
                ("generator", "ingest", "processor", "lake-sink", "feature-sink", "serving", "detector")}
    expected |= {f"StatefulSet/{NAME}-{s}" for s in ("postgres", "minio", "redis")}
    expected |= {f"Job/{NAME}-minio-bucket", f"FlinkDeployment/{NAME}-features/jobManager",
                 f"FlinkDeployment/{NAME}-features/taskManager", f"KafkaNodePool/{NAME}-dual",
                 f"Kafka/{NAME}/entity-operator"}
    assert set(pods) == expected
    problems = [p for where, pod in sorted(pods.items()) for p in hardening_problems(pod, where)]
    assert not problems, "\n".join(problems)
    for where, pod in pods.items():  # an emptyDir for what must be written, since the root is read-only
        if not where.startswith(("Kafka", "FlinkDeployment")):
            mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, where
        if where.startswith(("Deployment", "Job")):
            assert pod["automountServiceAccountToken"] is False, where


def test_a_spec_without_limits_still_gets_a_memory_limit_not_below_its_request() -> None:
    _kp, items = rendered()
    processor = of_kind(items, "Deployment")[f"{NAME}-processor"]["spec"]["template"]["spec"]["containers"][0]
    assert processor["resources"]["requests"]["memory"] == "1Gi"
    assert processor["resources"]["limits"]["memory"] == "1Gi"


# --- 4. NetworkPolicies: default deny, explicit allows --------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    name: str
    namespace: str | None  # None: not a pod (an address outside the cluster network)
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ip: str = "10.0.0.1"


def label_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def peer_matches(rule_peer: dict[str, Any], policy_ns: str, peer: Peer) -> bool:
    if "ipBlock" in rule_peer:  # conservative: CNIs such as Calico also apply ipBlocks to pod addresses
        block = rule_peer["ipBlock"]
        net = ipaddress.ip_network(block["cidr"])
        address = ipaddress.ip_address(peer.ip)
        return address.version == net.version and address in net and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", []))
    if peer.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        ns_labels = {"kubernetes.io/metadata.name": peer.namespace}
        if not label_match(rule_peer["namespaceSelector"], ns_labels):
            return False
    elif peer.namespace != policy_ns:
        return False
    return label_match(rule_peer.get("podSelector") or {}, peer.labels)


def port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    return not ports or any(p.get("port") in (None, port) and p.get("protocol", "TCP") == protocol for p in ports)


def direction_allows(policies: list[dict[str, Any]], pod: Peer, other: Peer, port: int, protocol: str,
                     kind: str) -> bool:
    """Whether `pod` may send (Egress) to / receive (Ingress) from `other` on `port`, by NetworkPolicy rules."""
    section, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    selecting = [p for p in policies if pod.namespace == p["metadata"]["namespace"]
                 and kind in p["spec"]["policyTypes"] and label_match(p["spec"]["podSelector"], pod.labels)]
    if pod.namespace is None or not selecting:
        return True  # not isolated in this direction
    return any(
        port_matches(rule.get("ports"), port, protocol)
        and (not rule.get(peers_key) or any(peer_matches(x, p["metadata"]["namespace"], other)
                                             for x in rule[peers_key]))
        for p in selecting for rule in p["spec"].get(section) or []
    )


def allowed(policies: list[dict[str, Any]], src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> bool:
    return (direction_allows(policies, src, dst, port, protocol, "Egress")
            and direction_allows(policies, dst, src, port, protocol, "Ingress"))


def cluster_pods(items: list[Desired]) -> dict[str, Peer]:
    """The pods the rendered objects become, with the labels they will carry."""
    pods: dict[str, Peer] = {}
    for n, (kind, name) in enumerate(sorted((d.kind, d.name) for d in items)):
        obj = next(d.obj for d in items if (d.kind, d.name) == (kind, name))
        spec = obj.get("spec", {})
        ip = f"10.1.{n}.1"
        if kind in ("Deployment", "StatefulSet", "Job"):
            key = "job" if kind == "Job" else name.removeprefix(f"{NAME}-")
            pods[key] = Peer(key, NS, spec["template"]["metadata"]["labels"], ip)
        elif kind == "FlinkDeployment":
            base = spec["podTemplate"]["metadata"]["labels"]
            for role in ("jobmanager", "taskmanager"):  # the Flink operator adds its own labels
                labels = {**base, "app": name, "component": role, "type": "flink-native-kubernetes"}
                pods[role] = Peer(role, NS, labels, f"10.1.{n}.{2 if role == 'jobmanager' else 3}")
        elif kind == "KafkaNodePool":  # Strimzi: the Kafka CR's labels, the pool template's, and its own
            kafka = next(d.obj for d in items if d.kind == "Kafka")
            labels = {**kafka["metadata"]["labels"], **spec["template"]["pod"]["metadata"]["labels"],
                      "strimzi.io/cluster": NAME, "strimzi.io/kind": "Kafka", "strimzi.io/name": f"{NAME}-kafka"}
            for broker in range(2):
                pods[f"kafka-{broker}"] = Peer(f"kafka-{broker}", NS, labels, f"10.1.{n}.{broker + 1}")
        elif kind == "Kafka":
            labels = {**obj["metadata"]["labels"], "strimzi.io/cluster": NAME, "strimzi.io/kind": "Kafka",
                      "strimzi.io/name": f"{NAME}-entity-operator"}
            pods["entity-operator"] = Peer("entity-operator", NS, labels, ip)
    pods |= {
        "dns": Peer("dns", "kube-system", {"k8s-app": "kube-dns"}, "10.2.0.10"),
        "prometheus": Peer("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, "10.2.0.11"),
        "client": Peer("client", "apps", {"app": "web"}, "10.2.0.12"),
        "intruder": Peer("intruder", NS, {"app": "something-else"}, "10.2.0.13"),
        "strimzi": Peer("strimzi", "strimzi", {"strimzi.io/kind": "cluster-operator"}, "10.2.0.14"),
        "flink-operator": Peer("flink-operator", "flink",
                               {"app.kubernetes.io/name": "flink-kubernetes-operator"}, "10.2.0.15"),
        "api-server": Peer("api-server", None, ip="192.0.2.1"),
        "internet": Peer("internet", None, ip="203.0.113.9"),
    }
    return pods


COMPONENTS = ("generator", "ingest", "processor", "lake-sink", "feature-sink", "serving", "detector")
REQUIRED = [  # (from, to, port, protocol): what the pipeline needs to work
    *[(c, "dns", 53, "UDP") for c in (*COMPONENTS, "jobmanager", "taskmanager", "job")],
    *[(c, "kafka-0", 9092, "TCP") for c in COMPONENTS if c != "serving"],
    *[(c, "kafka-1", 9093, "TCP") for c in ("processor", "jobmanager", "taskmanager")],  # the TLS listener
    *[(c, "postgres", 5432, "TCP") for c in ("processor", "feature-sink", "detector", "serving")],  # serving: anomalies
    *[(c, "redis", 6379, "TCP") for c in ("feature-sink", "serving")],
    *[(c, "minio", 9000, "TCP") for c in ("lake-sink", "jobmanager", "taskmanager", "job")],
    ("client", "ingest", 8080, "TCP"), ("client", "serving", 8090, "TCP"),
    *[("prometheus", c, 9000, "TCP") for c in COMPONENTS],
    ("kafka-0", "kafka-1", 9091, "TCP"), ("kafka-1", "kafka-0", 9090, "TCP"),  # replication, KRaft controllers
    ("strimzi", "kafka-0", 9091, "TCP"), ("strimzi", "kafka-0", 8443, "TCP"),  # Strimzi's operators
    ("entity-operator", "kafka-1", 9091, "TCP"),
    ("jobmanager", "taskmanager", 6122, "TCP"), ("taskmanager", "jobmanager", 6123, "TCP"),
    ("taskmanager", "jobmanager", 6124, "TCP"), ("taskmanager", "taskmanager", 6121, "TCP"),
    ("jobmanager", "api-server", 443, "TCP"), ("flink-operator", "jobmanager", 8081, "TCP"),
    *[(c, "internet", 4317, "TCP") for c in COMPONENTS],  # the OTLP collector the spec names
]
DENIED = [  # (from, to, port, protocol): least privilege
    ("ingest", "postgres", 5432, "TCP"), ("generator", "postgres", 5432, "TCP"), ("ingest", "redis", 6379, "TCP"),
    ("processor", "redis", 6379, "TCP"), ("processor", "minio", 9000, "TCP"), ("serving", "kafka-0", 9092, "TCP"),
    ("client", "postgres", 5432, "TCP"), ("client", "kafka-0", 9092, "TCP"),
    ("intruder", "kafka-0", 9092, "TCP"), ("intruder", "redis", 6379, "TCP"), ("intruder", "minio", 9000, "TCP"),
    ("client", "minio", 9001, "TCP"), ("client", "jobmanager", 8081, "TCP"), ("ingest", "jobmanager", 6123, "TCP"),
    ("ingest", "internet", 443, "TCP"), ("processor", "api-server", 443, "TCP"), ("postgres", "internet", 443, "TCP"),
    ("redis", "dns", 53, "UDP"), ("kafka-0", "internet", 443, "TCP"), ("client", "processor", 8080, "TCP"),
    ("job", "postgres", 5432, "TCP"), ("lake-sink", "kafka-0", 9091, "TCP"), ("processor", "kafka-0", 9090, "TCP"),
    ("minio", "internet", 443, "TCP"), ("detector", "minio", 9000, "TCP"), ("taskmanager", "internet", 80, "TCP"),
    ("entity-operator", "kafka-0", 8443, "TCP"), ("client", "kafka-0", 9091, "TCP"),
]


def strimzi_listener_policy(kafka: dict[str, Any]) -> dict[str, Any]:
    """The NetworkPolicy Strimzi generates for the brokers: each listener open to its `networkPolicyPeers`
    (to everyone when it has none). Policies add up, so the listeners must name their peers."""
    name = kafka["metadata"]["name"]
    ingress = [{"ports": [{"protocol": "TCP", "port": listener["port"]}],
                **({"from": listener["networkPolicyPeers"]} if listener.get("networkPolicyPeers") else {})}
               for listener in kafka["spec"]["kafka"]["listeners"]]
    return {"metadata": {"name": f"{name}-network-policy-kafka", "namespace": kafka["metadata"]["namespace"]},
            "spec": {"podSelector": {"matchLabels": {"strimzi.io/cluster": name, "strimzi.io/name": f"{name}-kafka"}},
                     "policyTypes": ["Ingress"], "ingress": ingress}}


def test_network_policies_deny_by_default_and_allow_exactly_the_pipelines_paths() -> None:
    _, items = rendered()
    (kafka,) = of_kind(items, "Kafka").values()
    policies = [*of_kind(items, "NetworkPolicy").values(), strimzi_listener_policy(kafka)]
    pods = cluster_pods(items)
    # every pod the pipeline runs is isolated both ways (Strimzi's entity operator is Strimzi's business)
    deny = [p for p in policies if p["metadata"]["name"] == f"{NAME}-default-deny"]
    assert len(deny) == 1 and deny[0]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert deny[0]["spec"]["ingress"] == [] and deny[0]["spec"]["egress"] == []
    for name, pod in pods.items():
        if pod.labels.get(LABEL_PIPELINE) == NAME and name != "entity-operator":
            assert label_match(deny[0]["spec"]["podSelector"], pod.labels), f"{name} is not isolated"
    missing = [(a, b, port, proto) for a, b, port, proto in REQUIRED
               if not allowed(policies, pods[a], pods[b], port, proto)]
    assert not missing, f"needed paths denied: {missing}"
    leaks = [(a, b, port, proto) for a, b, port, proto in DENIED if allowed(policies, pods[a], pods[b], port, proto)]
    assert not leaks, f"paths that should be denied are allowed: {leaks}"
    # defence in depth: a pipeline pod's own egress refuses them too, whatever the target's policies say
    egress = [(a, b, port) for a, b, port, proto in DENIED if pods[a].labels.get(LABEL_PIPELINE) == NAME
              and a != "entity-operator" and direction_allows(policies, pods[a], pods[b], port, proto, "Egress")]
    assert not egress, f"egress allowed for denied paths: {egress}"


def test_the_policy_evaluator_sees_unisolated_pods_as_open() -> None:
    """Without the default deny a pod that no other policy selects (the bucket Job) takes any ingress."""
    _, items = rendered()
    policies = [d.obj for d in items if d.kind == "NetworkPolicy" and not d.name.endswith("-default-deny")]
    pods = cluster_pods(items)
    assert allowed(policies, pods["client"], pods["entity-operator"], 1234)
    assert not allowed(policies, pods["client"], pods["postgres"], 5432)


def test_external_stores_are_reached_on_their_ports_only() -> None:
    _, items = rendered(EXTERNAL_SPEC)
    policies = list(of_kind(items, "NetworkPolicy").values())
    pods = cluster_pods(items)
    internet = pods["internet"]
    assert allowed(policies, pods["processor"], internet, 9096)  # the external bootstrap's port
    assert allowed(policies, pods["processor"], internet, 5432) and allowed(policies, pods["serving"], internet, 6379)
    assert not allowed(policies, pods["ingest"], internet, 5432)
    assert not allowed(policies, pods["serving"], internet, 9096)
    assert not allowed(policies, pods["processor"], internet, 9092)
    assert allowed(policies, pods["detector"], internet, 9443)  # its Alertmanager
    assert not allowed(policies, pods["processor"], internet, 9443)


# --- 5. secrets only in Secrets --------------------------------------------------------------------------------

SECRET_ENV_NAMES = {SecretEnv.POSTGRES_DSN, SecretEnv.REDIS_URL, SecretEnv.INGEST_TOKENS, SecretEnv.KAFKA_PASSWORD,
                    SecretEnv.S3_ACCESS_KEY, SecretEnv.S3_SECRET_KEY, SecretEnv.ALERTMANAGER_USERNAME,
                    SecretEnv.ALERTMANAGER_PASSWORD, SecretEnv.ALERTMANAGER_TOKEN}
SECRETISH = re.compile(r"PASSWORD|TOKENS?$|SECRET|DSN|_URL$|ACCESS_KEY|AUTH|MC_HOST", re.IGNORECASE)
CREDENTIAL_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@\"]*:[^/\s@\"]+@", re.IGNORECASE)


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def test_secrets_appear_only_in_secret_objects() -> None:
    _kp, items = rendered()
    secrets = [d for d in items if d.kind == "Secret"]
    assert {d.name for d in secrets} == {f"{NAME}-{s}" for s in ("postgres", "minio", "redis", "ingest-tokens")}
    # the values the operator will generate (known here), in every form they could leak in
    values: set[str] = set()
    for d in secrets:
        assert d.recipe is not None and "data" not in d.obj and "stringData" not in d.obj, d.name
        data = generate_secret_data(d.recipe)
        values |= {v for k, v in data.items() if k != "username"}
    values |= {base64.b64encode(v.encode()).decode() for v in values}
    public = [d.obj for d in items if d.kind != "Secret"]
    text = json.dumps(public)
    assert not [v for v in values if v in text]
    assert not CREDENTIAL_URL.search(text), CREDENTIAL_URL.search(text)
    # every secret a container gets is a secretKeyRef; literal env values carry no secret; no secret flags
    pods = pod_specs(items)
    assert pods
    for where, pod in pods.items():
        for c in all_containers(pod):
            for env in c.get("env", []):
                if env["name"] in SECRET_ENV_NAMES or SECRETISH.search(env["name"]):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], (where, env)
            argv = " ".join([*c.get("command", []), *c.get("args", [])])
            assert not CREDENTIAL_URL.search(argv) and not re.search(r"--(password|token)", argv), (where, argv)
    # the configs (ConfigMap, the Flink job's SQL) name no credential at all
    for key, config in of_kind(items, "ConfigMap")[f"{NAME}-config"]["data"].items():
        assert not re.search(r"password|sasl\.jaas|secret_key|access_key\"\s*:", config, re.IGNORECASE), key


def test_a_leaked_secret_would_be_caught() -> None:
    """The scans above find a secret put where it does not belong (a literal env, a credential URL)."""
    leaked = {"name": SecretEnv.INGEST_TOKENS, "value": "t0ken"}
    assert SECRETISH.search(leaked["name"]) and "value" in leaked
    assert CREDENTIAL_URL.search('"postgresql://adnomaly:s3cret@db:5432/adnomaly"')
    assert CREDENTIAL_URL.search("redis://:pw@redis:6379/0")
    assert not CREDENTIAL_URL.search("http://clickstream-minio.team-a.svc:9000")


# --- 6. the Flink job --------------------------------------------------------------------------------------------


def test_the_flink_job_config_is_the_compiled_job_mounted_from_the_config_map() -> None:
    p = pipeline(FULL_SPEC)
    kp, items = rendered()
    shared = kp.components["processor"].config
    expected = compile_job(p, shared.kafka, events_config(p), flink_job_options(p, kp.stores))
    config_map = of_kind(items, "ConfigMap")[f"{NAME}-config"]
    assert json.loads(config_map["data"]["features.json"]) == json.loads(expected.to_json())
    flink = of_kind(items, "FlinkDeployment")[f"{NAME}-features"]["spec"]
    (container,) = flink["podTemplate"]["spec"]["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    volume = next(v for v in flink["podTemplate"]["spec"]["volumes"] if v["name"] == "config")
    assert volume["configMap"] == {"name": f"{NAME}-config", "items": [{"key": "features.json", "path": "config.json"}]}
    assert flink["job"]["args"][-2:] == ["--config", f"{mount['mountPath']}/config.json"]
    conf = flink["flinkConfiguration"]
    for key, value in expected.configuration.items():  # the cluster runs with the job's own options
        assert conf[key] == value, key
    assert conf["state.backend.type"] == "rocksdb" and conf["execution.checkpointing.dir"].startswith("s3://")
    assert flink["job"]["parallelism"] == int(expected.configuration["parallelism.default"])
    s3 = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert s3["AWS_ACCESS_KEY_ID"] == {"name": f"{NAME}-minio", "key": "accessKey"}
    assert s3["ADNOMALY_KAFKA_PASSWORD"] == {"name": f"{NAME}-features-kafka", "key": "password"}


def test_the_flink_jobs_role_names_every_verb() -> None:
    _, items = rendered()
    role = of_kind(items, "Role")[f"{NAME}-flink"]
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    assert ("", "pods", "create") in granted and ("", "configmaps", "update") in granted
    assert not any(r in ("secrets", "roles", "rolebindings", "services") for _, r, _ in granted)


@pytest.mark.parametrize("spec", [FULL_SPEC, EXTERNAL_SPEC])
def test_rendering_is_deterministic(spec: dict[str, Any]) -> None:
    assert [d.obj for d in rendered(spec)[1]] == [d.obj for d in rendered(spec)[1]]


def test_ingest_tokens_are_a_mounted_secret_so_a_rotation_reaches_running_pods() -> None:
    _, items = rendered()
    pod = of_kind(items, "Deployment")[f"{NAME}-ingest"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert SecretEnv.INGEST_TOKENS not in env  # an env var would keep the old tokens until a restart
    mount = next(m for m in container["volumeMounts"] if m["name"] == "ingest-tokens")
    assert "subPath" not in mount and mount["readOnly"] is True  # subPath mounts are never refreshed
    assert env[SecretEnv.INGEST_TOKENS_FILE]["value"] == f"{mount['mountPath']}/tokens"
    volume = next(v for v in pod["volumes"] if v["name"] == "ingest-tokens")
    assert volume["secret"] == {"secretName": f"{NAME}-ingest-tokens", "items": [{"key": "tokens", "path": "tokens"}]}
    # the ConfigMap and the pod template's hash annotation stay the same when the tokens change
    assert not any("ingest-tokens" in json.dumps(cm) for cm in of_kind(items, "ConfigMap").values())

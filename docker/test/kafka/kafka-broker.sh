#!/bin/bash
# Single-node KRaft broker. KAFKA_ADVERTISED_HOST: the name clients reach it by (a Service's DNS name);
# KAFKA_CLUSTER_ID: fixed per deployment so a restarted pod keeps its formatted data directory;
# KAFKA_HEAP (default 512m).
set -euo pipefail
: "${KAFKA_ADVERTISED_HOST:?set KAFKA_ADVERTISED_HOST}" "${KAFKA_CLUSTER_ID:?set KAFKA_CLUSTER_ID}"
config=/tmp/server.properties
cat > "$config" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093
advertised.listeners=PLAINTEXT://${KAFKA_ADVERTISED_HOST}:9092
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=/var/lib/kafka/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPERTIES
java=(java "-Xmx${KAFKA_HEAP:-512m}" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
      -Dlog4j2.configurationFile=/opt/kafka/log4j2.properties -Dkafka.logs.dir=/tmp -cp '/opt/kafka/libs/*')
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  "${java[@]}" kafka.tools.StorageTool format --config "$config" --cluster-id "$KAFKA_CLUSTER_ID" --ignore-formatted
fi
# exec: the JVM is PID 1 and gets SIGTERM itself, so a deleted pod shuts the broker down cleanly.
exec "${java[@]}" kafka.Kafka "$config"

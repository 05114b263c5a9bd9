-- Re-sent events: a record of the raw topic whose event id was already stored from another position (a
-- client retry through the ingest API, a producer that sent twice). Keyed by the record's own position, so a
-- batch written twice (a replay after a crash or a rebalance) records each re-send once; a replay of the
-- stored copy itself (same position) is no re-send and is not recorded. `adnomaly up` reports their count
-- as `duplicates`: stored + dlq == produced + ingested - duplicates.
CREATE TABLE duplicates (
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    event_id        text        COLLATE "C" NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kafka_partition, kafka_offset)
);

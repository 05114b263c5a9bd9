-- Stored events, one row per event id (the idempotency key).
-- Runs with search_path set to the pipeline's schema: names stay unqualified.
CREATE TABLE events (
    event_id        text        COLLATE "C" PRIMARY KEY,  -- byte order: cheaper comparisons than a locale
    event_time      timestamptz NOT NULL,
    payload         jsonb       NOT NULL,
    kafka_partition integer,
    kafka_offset    bigint,
    stored_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_event_time_idx ON events (event_time);

"""The processor: raw topic → validation → PostgreSQL (idempotent, keyed by event id), invalid events → DLQ.

Delivery is at-least-once (offsets are committed only after the database transaction has committed and
the dead-letter messages are acknowledged); writes keyed by event id make the effect exactly-once.
"""

"""Sinks: the Parquet data lake (raw events) and the feature store (Redis + PostgreSQL)."""

"""The HTTP ingest API: `POST /v1/events` validates events and produces them to the raw Kafka topic.

Run it with `python -m adnomaly.ingest --config PATH`; build it in tests with `create_app`.
"""

from adnomaly.ingest.app import create_app

__all__ = ["create_app"]

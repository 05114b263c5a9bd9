"""Event schemas and the codec that validates raw Kafka/HTTP bytes into stored events."""

from adnomaly.events.codec import EventCodec, InvalidEvent, ValidEvent, codec_for
from adnomaly.events.schemas import BUILTIN_SCHEMAS, SCHEMA_NAMES

__all__ = ["BUILTIN_SCHEMAS", "SCHEMA_NAMES", "EventCodec", "InvalidEvent", "ValidEvent", "codec_for"]

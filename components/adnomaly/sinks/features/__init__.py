"""The feature sink: features topic → Redis (online, latest window per entity) and PostgreSQL (history)."""

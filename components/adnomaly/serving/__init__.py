"""The online feature API: the latest window of each feature and entity, served from Redis."""

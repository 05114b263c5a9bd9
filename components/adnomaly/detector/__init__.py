"""The detector component: features topic → detection engine → anomalies topic + PostgreSQL `anomalies`."""

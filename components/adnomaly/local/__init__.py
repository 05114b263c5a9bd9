"""The local backend: `adnomaly up` runs a Pipeline as local processes against real local services."""

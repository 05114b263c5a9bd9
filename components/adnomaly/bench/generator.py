"""`adnomaly bench generator`: events/s of the pure generator per schema (see adnomaly.generator.bench)."""

from adnomaly.generator.bench import register

__all__ = ["register"]

"""Adnomaly: real-time anomaly-detection pipelines from one declarative spec."""

__version__ = "0.1.0"

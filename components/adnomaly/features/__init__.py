"""Declarative windowed features: the record format on the features topic and the compilers to Flink SQL."""

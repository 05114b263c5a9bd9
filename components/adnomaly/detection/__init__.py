"""Pure anomaly detection: detectors, anomaly lifecycle, an offline windowing reference, scoring, NAB."""

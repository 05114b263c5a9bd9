"""Monitoring as code: the catalog of metric names the code registers, Grafana dashboards generated from
it, and the PromQL helpers the checks use. Pure: nothing here talks to a network."""

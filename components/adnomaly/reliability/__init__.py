"""The fault suite: run a pipeline locally under load, break it on a seeded schedule, verify nothing was lost.

- `schedule`: seed → the list of fault actions (pure);
- `spec`: the Pipeline the suite runs;
- `harness`: the pipeline's services and processes (the `adnomaly up` backend) with kill/restart handles;
- `load`: generator and ingest-API traffic, recording every id the pipeline acknowledged;
- `chaos`: executes the schedule against the harness and measures recovery;
- `readers` / `verify`: what the stores hold, and the pure comparison with what was produced;
- `run`: all of it, end to end (what `adnomaly bench reliability` and tests/reliability call).
"""

"""Reading anomalies back: the filters people ask with, the SQL that answers them, and the I/O that runs it.

Shared by the serving component (`GET /v1/anomalies`, the console) and `adnomaly anomalies`.
"""

"""The lake sink: raw topic → Parquet files partitioned by event time, in S3 (MinIO) or a directory."""

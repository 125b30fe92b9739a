"""Bytes beyond the local disk: object stores (s3://, gs://, file://) and the node-local
shard cache."""

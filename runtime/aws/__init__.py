"""Adapters around boto3: blocking calls run in threads, errors become our own."""

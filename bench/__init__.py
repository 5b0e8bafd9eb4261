"""Benchmarks of the system beside the peers a user would pick instead (never timed tests)."""

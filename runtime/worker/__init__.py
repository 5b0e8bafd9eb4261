"""The worker: receive commands, run each in its own nursery, shut down gracefully."""

"""python -m scaler: queue depth -> worker tasks (ECS Fargate, or local processes)."""

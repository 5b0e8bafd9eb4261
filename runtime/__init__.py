"""The worker (``python -m runtime``) and the contract that the scaler and gateway share."""

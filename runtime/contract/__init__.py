"""What other programs rely on: message format, event shapes, Redis names, settings."""

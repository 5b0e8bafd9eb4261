"""Redis: terminal events out, input in, command records and project leases."""

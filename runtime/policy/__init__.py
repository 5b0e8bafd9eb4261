"""Decisions that need no I/O: plain functions and classes, tested without servers."""

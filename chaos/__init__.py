"""Chaos suite: fault scenarios against a real cluster, a recorded history, and its checker."""

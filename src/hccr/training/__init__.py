"""Pieces of the training loop (`hccr.train`): config parsing, schedules, history, resume state."""

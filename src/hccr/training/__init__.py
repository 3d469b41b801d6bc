"""Pieces of the training loop (`hccr.training.train`): config parsing, schedules, history, resume state."""

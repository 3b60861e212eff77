"""Profiling of the thinker training step: timing, memory, utilisation and MFU."""

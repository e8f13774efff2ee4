"""Diffusion schedules, samplers (pure functions), guidance and inversion."""

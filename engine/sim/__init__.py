"""`planfile bench`: a plan's real scheduler run under a virtual clock (nothing executes).

`estimates` says how long each step would take and what its model calls would cost,
`clock` drives the engine's own `Schedule` and `Priorities` over an event heap of
finish times, and `bench` runs the configurations a user asks about and measures them.
This package imports engine.run; engine.run never imports it (tests/test_layers.py).
"""

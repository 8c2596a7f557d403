"""Backends that execute a run's calls away from the coordinating process (a cluster).

The interface and the local backend are in engine/run/backend.py; `dask` is the Dask
backend (the `cluster` extra), `placement` maps tools and tiers to worker resources,
`worker` is the code that runs on the workers, `connect` checks an address before
connecting.
"""

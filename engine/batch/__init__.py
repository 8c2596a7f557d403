"""Batches: one run of a plan per row of a JSONL or CSV file, many at once, with budgets.

`rows` reads and types the rows (located errors), `state` keeps the batch's progress
store (SQLite under PLANFILE_HOME) and its lease, `output` the append-only results file,
`runner` runs the rows on one event loop through one `Engine`, and `progress` shows it.
The layer sits beside `engine/cli` and `engine/agent`: nothing below imports it.
"""

"""Watching runs: the audit log, tracing, the terminal display, the HTML report."""

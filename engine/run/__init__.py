"""Running a checked plan: the schedule's bookkeeping, the async driver, one step's execution, events, the result."""

"""LLM-driven planning: the planner, replanning policies and rounds, their prompts."""

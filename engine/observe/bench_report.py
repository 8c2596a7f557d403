"""The `planfile bench --html` page: the simulated timeline, drawn as the run report draws one.

The timeline is engine/observe/report.py's Gantt chart, fed with records made from
the simulation (a fan-out step spans from its expansion to its last item); above it,
the what-if table and the cost estimate as text.
"""

from __future__ import annotations

import html
import math
from typing import Any

from dsl.checker import CheckedPlan
from engine.observe.report import gantt_svg
from engine.run.result import StepRecord, StepStatus
from engine.sim.clock import Timeline
from engine.sim.report import render_text


def simulated_records(checked: CheckedPlan, timeline: Timeline) -> dict[str, StepRecord]:
    """One record per plan step that the simulation ran (or skipped), with its times."""
    dag = checked.graph.compact
    by_id = {step.id: step for step in checked.plan.steps}
    records = {}
    for node, name in enumerate(dag.names):
        began, ended = timeline.start[node], timeline.finish[node]
        if math.isnan(began) or math.isnan(ended):
            continue
        status = StepStatus.SKIPPED if node in timeline.skipped else StepStatus.SUCCEEDED
        records[name] = StepRecord(
            tool=by_id[name].tool, status=status, started_at=began, finished_at=ended
        )
    return records


def render_bench_report(
    checked: CheckedPlan, doc: dict[str, Any], timeline: Timeline, critical: set[str]
) -> str:
    """The whole page as one self-contained HTML string (no scripts, no fetches)."""
    first = doc["configurations"][0] if doc["configurations"] else {"max_parallel": "?"}
    title = f"planfile bench: {checked.plan.name}"
    chart = gantt_svg(checked, simulated_records(checked, timeline), critical)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; }}
pre {{ background: #f6f6f6; padding: 10px; font-size: 12px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Simulated: nothing ran and no model was called.</p>
<pre id="summary">{html.escape(render_text(doc))}</pre>
<h2>Simulated timeline (max-parallel {first["max_parallel"]}, run 1)</h2>
<p id="critical-path">critical path: {" → ".join(html.escape(s) for s in doc["critical_path"]["steps"]) or "—"}</p>
{chart}
</body></html>
"""

"""The HTML run report: one self-contained page (inline SVG and CSS, no scripts, no fetches).

It shows the DAG coloured by step state with the observed critical path marked, a
timeline (Gantt) of when each step ran, the cost table per step and per model, and
each agent step's inner tool calls.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from dsl.checker import CheckedPlan
from engine.observe.display import preview
from engine.observe.export import STATE_COLOURS
from engine.run.result import StepRecord, observed_critical_path

NODE_W, NODE_H, GAP_X, GAP_Y = 170, 38, 60, 22


def _dag_svg(checked: CheckedPlan, records: Mapping[str, StepRecord], critical: set[str]) -> str:
    depth: dict[str, int] = {}
    for name in checked.graph.order:
        depth[name] = 1 + max((depth[d] for d in checked.deps[name]), default=-1)
    columns: dict[int, list[str]] = {}
    for step in checked.plan.steps:
        columns.setdefault(depth.get(step.id, 0), []).append(step.id)
    pos: dict[str, tuple[int, int]] = {}
    for col, names in columns.items():
        for row, name in enumerate(names):
            pos[name] = (20 + col * (NODE_W + GAP_X), 20 + row * (NODE_H + GAP_Y))
    width = 40 + (max(columns, default=0) + 1) * (NODE_W + GAP_X)
    height = 40 + max((len(v) for v in columns.values()), default=1) * (NODE_H + GAP_Y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="dag">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    for step_id, needs in checked.deps.items():
        for need in needs:
            (x1, y1), (x2, y2) = pos[need], pos[step_id]
            hot = need in critical and step_id in critical
            parts.append(
                f'<line class="edge{" critical" if hot else ""}" x1="{x1 + NODE_W}" y1="{y1 + NODE_H / 2}" '
                f'x2="{x2}" y2="{y2 + NODE_H / 2}" stroke="{"#d81b60" if hot else "#555"}" '
                f'stroke-width="{3 if hot else 1.2}" marker-end="url(#arrow)"/>'
            )
    for step in checked.plan.steps:
        x, y = pos[step.id]
        state = records[step.id].status if step.id in records else "pending"
        colour = STATE_COLOURS.get(state, "#ffffff")
        text_colour = "#000" if state in ("pending", "skipped") else "#fff"
        outline = ' stroke="#d81b60" stroke-width="3"' if step.id in critical else ' stroke="#333"'
        parts.append(
            f'<g class="node" data-step="{html.escape(step.id)}" data-state="{state}">'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{colour}"{outline}/>'
            f'<text x="{x + 8}" y="{y + 16}" fill="{text_colour}" font-size="12" font-weight="bold">'
            f"{html.escape(step.id[:22])}</text>"
            f'<text x="{x + 8}" y="{y + 31}" fill="{text_colour}" font-size="11">'
            f"{html.escape(step.tool)} · {state}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def gantt_svg(checked: CheckedPlan, records: Mapping[str, StepRecord], critical: set[str]) -> str:
    """The steps as bars on a time axis (SVG), the critical path's steps marked."""
    timed = [
        (s.id, records[s.id])
        for s in checked.plan.steps
        if s.id in records
        and records[s.id].started_at is not None
        and records[s.id].finished_at is not None
    ]
    end = max((r.finished_at or 0.0 for _, r in timed), default=0.0) or 1.0
    label_w, bar_w, row_h = 180, 640, 22
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 90}" height="{30 + row_h * len(timed)}" class="gantt">'
    ]
    for index, (name, record) in enumerate(timed):
        y = 10 + index * row_h
        x = label_w + (record.started_at or 0.0) / end * bar_w
        w = max(2.0, ((record.finished_at or 0.0) - (record.started_at or 0.0)) / end * bar_w)
        colour = STATE_COLOURS.get(record.status, "#999")
        outline = ' stroke="#d81b60" stroke-width="2"' if name in critical else ""
        seconds = (record.finished_at or 0.0) - (record.started_at or 0.0)
        parts.append(
            f'<g class="bar" data-step="{html.escape(name)}"><text x="4" y="{y + 14}" font-size="12">{html.escape(name[:26])}</text>'
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}"{outline}/>'
            f'<text x="{x + w + 4:.1f}" y="{y + 13}" font-size="11">{seconds:.3f}s</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _cost_tables(checked: CheckedPlan, records: Mapping[str, StepRecord]) -> str:
    rows = []
    by_model: dict[str, list[float]] = {}
    for step in checked.plan.steps:
        record = records.get(step.id)
        if record is None:
            continue
        label = record.model or "—"
        tier = step.tier or (step.task or "")
        rows.append(
            f"<tr><td>{html.escape(step.id)}</td><td>{html.escape(record.status)}</td><td>{html.escape(label)}</td>"
            f"<td>{html.escape(tier)}</td><td class=n>{record.input_tokens}</td><td class=n>{record.output_tokens}</td>"
            f"<td class=n>${record.cost_usd:.6f}</td></tr>"
        )
        if record.model:
            entry = by_model.setdefault(record.model, [0, 0, 0.0])
            entry[0] += record.input_tokens
            entry[1] += record.output_tokens
            entry[2] += record.cost_usd
    model_rows = (
        "".join(
            f"<tr><td>{html.escape(m)}</td><td class=n>{int(a)}</td><td class=n>{int(b)}</td><td class=n>${c:.6f}</td></tr>"
            for m, (a, b, c) in sorted(by_model.items())
        )
        or "<tr><td colspan=4>no model calls</td></tr>"
    )
    return (
        '<table class="costs"><tr><th>step</th><th>status</th><th>model</th><th>tier / task</th>'
        "<th>in tokens</th><th>out tokens</th><th>cost</th></tr>" + "".join(rows) + "</table>"
        '<h3>Per model</h3><table class="per-model"><tr><th>model</th><th>in tokens</th><th>out tokens</th>'
        "<th>cost</th></tr>" + model_rows + "</table>"
    )


def _tool_call_table(calls: list[dict[str, Any]]) -> str:
    rows = []
    for number, call in enumerate(calls, 1):
        error = call.get("error")
        result = f"error: {preview(error, 200)}" if error else preview(call.get("output"), 200)
        started, finished = call.get("started_at"), call.get("finished_at")
        took = (
            f"{finished - started:.3f}s"
            if isinstance(started, int | float) and isinstance(finished, int | float)
            else ""
        )
        row_class = ' class="error"' if error else ""
        rows.append(
            f"<tr{row_class}><td class=n>{number}</td>"
            f"<td>{html.escape(str(call.get('tool')))}</td>"
            f"<td><code>{html.escape(preview(call.get('args'), 200))}</code></td>"
            f"<td>{html.escape(result)}</td><td class=n>{took}</td></tr>"
        )
    return (
        '<table class="tool-calls"><tr><th>#</th><th>tool</th><th>arguments</th>'
        "<th>output / error</th><th>time</th></tr>"
        + ("".join(rows) or "<tr><td colspan=5>no tool calls</td></tr>")
        + "</table>"
    )


def _agent_tables(
    checked: CheckedPlan,
    records: Mapping[str, StepRecord],
    journaled: Mapping[str, list[dict[str, Any]]],
) -> str:
    """Under each agent step: its model calls and a row per inner tool call (tool,
    arguments, output or error, duration); for one stopped mid-loop (no final record),
    the calls the journal holds (`journaled`, per step id). Empty without agent steps."""
    parts = []
    for step in checked.plan.steps:
        record = records.get(step.id)
        anchor = f'<h3 data-step="{html.escape(step.id)}">{html.escape(step.id)}: '
        if record is not None and record.tool_calls is not None:
            parts.append(
                f"{anchor}{record.iterations} model call(s), "
                f"{len(record.tool_calls)} tool call(s)</h3>" + _tool_call_table(record.tool_calls)
            )
        elif record is None and journaled.get(step.id):
            calls = journaled[step.id]
            tools = [call for call in calls if call.get("kind") == "tool"]
            models = len(calls) - len(tools)
            parts.append(
                f"{anchor}not finished; {models} model call(s), {len(tools)} tool call(s) "
                "journaled (`planfile resume` replays them)</h3>" + _tool_call_table(tools)
            )
    return "<h2>Agent steps</h2>" + "".join(parts) if parts else ""


def render_report(
    checked: CheckedPlan,
    records: Mapping[str, StepRecord],
    *,
    run_id: str,
    status: str,
    cost_usd: float,
    started_at: str = "",
    agent_calls: Mapping[str, list[dict[str, Any]]] | None = None,
) -> str:
    """The whole report page as one HTML string. `agent_calls`: the journaled inner
    calls of agent steps (`Journal.agent_calls`), shown for those that did not finish."""
    _, critical_chain = observed_critical_path(checked, records)
    critical = set(critical_chain)
    title = f"planfile run {run_id}: {checked.plan.name}"
    legend = "".join(
        f'<span class="key" style="background:{colour}"></span>{state} '
        for state, colour in STATE_COLOURS.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
.key {{ display: inline-block; width: 12px; height: 12px; border: 1px solid #333; margin: 0 4px 0 10px; }}
.summary span {{ margin-right: 18px; }}
tr.error td {{ color: #b71c1c; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="summary"><span id="status">status: <b>{html.escape(status)}</b></span>
<span>started: {html.escape(started_at)}</span><span id="total-cost">cost: <b>${cost_usd:.6f}</b></span>
<span>steps: {len(checked.plan.steps)}</span></p>
<h2>Plan</h2><p>{legend}<span class="key" style="background:#fff;border:3px solid #d81b60"></span>critical path</p>
{_dag_svg(checked, records, critical)}
<h2>Timeline</h2><p id="critical-path">critical path: {" → ".join(html.escape(s) for s in critical_chain) or "—"}</p>
{gantt_svg(checked, records, critical)}
<h2>Cost</h2>
{_cost_tables(checked, records)}
{_agent_tables(checked, records, agent_calls or {})}
</body></html>
"""

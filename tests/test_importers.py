"""Importers: LLMCompiler and ReWOO plan text, from those projects' own examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsl import PlanError, check, format_plan, parse_text
from dsl.importers import import_plan
from dsl.ir import Ref
from stdlib_tools import ToolRegistry

# The example from LLMCompiler's README (Kim et al., "An LLM Compiler for Parallel
# Function Calling", 2024): "How much does Microsoft's market cap need to increase to
# exceed Apple's market cap?"
LLMCOMPILER = """Thought: I need the market caps of both companies.
1. search("Microsoft market cap")
2. search("Apple market cap")
Thought: Then the difference.
3. math("$2 - $1", ["$1", "$2"])
4. join()<END_OF_PLAN>
"""

# The HotpotQA example from the ReWOO paper (Xu et al., 2023, Figure 2).
REWOO = """Plan: Search for more information about Colorado orogeny.
#E1 = Wikipedia[Colorado orogeny]
Plan: Find out the area that eastern sector of the Colorado orogeny extends into.
#E2 = LLM[What is the name of the area that eastern sector of Colorado orogeny extends into? Given context: #E1]
Plan: Search for more information about the area.
#E3 = Wikipedia[#E2]
Plan: Find out the elevation range of the area.
#E4 = LLM[What is elevation range of the area #E2? Given context: #E3]
"""


def test_llmcompiler_example(registry: ToolRegistry) -> None:
    """Numbered tasks, `$N` references, thoughts and join() become a checked DAG."""
    plan = import_plan("llmcompiler", LLMCOMPILER, registry)
    checked = check(plan, registry)
    assert [s.id for s in plan.steps] == ["step_1", "step_2", "step_3", "answer"]
    assert plan.steps[0].args == {"query": "Microsoft market cap"}
    assert plan.steps[0].description == "I need the market caps of both companies."
    assert plan.steps[2].tool == "llm"
    assert (
        plan.steps[2].args["prompt"]
        == "{{ step_2 }} - {{ step_1 }}\nContext:\n- {{ step_1 }}\n- {{ step_2 }}"
    )
    assert checked.deps["step_3"] == ("step_1", "step_2")
    assert checked.deps["step_1"] == () and checked.deps["step_2"] == ()
    assert plan.outputs == ("answer",) and plan.steps[-1].tool == "llm"


def test_llmcompiler_references_and_keywords(registry: ToolRegistry) -> None:
    """A whole-argument `$1` is a reference; keyword arguments are kept."""
    plan = import_plan("llmcompiler", '1. search("x", k=2)\n2. summarize(${1}, words=50)', registry)
    assert plan.steps[0].args == {"query": "x", "k": 2}
    assert plan.steps[1].args == {"text": Ref(ref="step_1"), "words": 50}


def test_rewoo_example(registry: ToolRegistry) -> None:
    """`#E` evidence variables, `Plan:` lines and Tool[input] become a checked chain."""
    plan = import_plan("rewoo", REWOO, registry)
    checked = check(plan, registry)
    assert [(s.id, s.tool) for s in plan.steps] == [
        ("E1", "search"),
        ("E2", "llm"),
        ("E3", "search"),
        ("E4", "llm"),
    ]
    assert plan.steps[2].args == {"query": Ref(ref="E2")}
    assert "{{ E1 }}" in plan.steps[1].args["prompt"]
    assert checked.deps["E4"] == ("E2", "E3")
    assert plan.steps[0].description == "Search for more information about Colorado orogeny."


@pytest.mark.parametrize("kind,text", [("llmcompiler", LLMCOMPILER), ("rewoo", REWOO)])
def test_imported_plans_print_and_reparse(kind: str, text: str, registry: ToolRegistry) -> None:
    """An imported plan prints as .plan text that parses back to the same IR."""
    plan = import_plan(kind, text, registry)
    assert parse_text(format_plan(plan))[0] == plan


def test_import_errors_are_located(registry: ToolRegistry) -> None:
    """Malformed lines, unknown tools and repeated numbers name the line."""
    with pytest.raises(PlanError, match="not llmcompiler plan text"):
        import_plan("llmcompiler", '1. search("a"\n', registry, "p.txt")
    with pytest.raises(PlanError) as info:
        import_plan("llmcompiler", '1. serch("a")', registry, "p.txt")
    assert str(info.value.diagnostics[0].location) == "p.txt:1:4"
    assert info.value.diagnostics[0].hint == "did you mean `search`?"
    with pytest.raises(PlanError, match="defined twice"):
        import_plan("rewoo", "#E1 = Google[a]\n#E1 = Google[b]", registry)


def test_cli_from_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--from` works on check, fmt and run."""
    from engine.cli.main import main

    path = tmp_path / "plan.txt"
    path.write_text("Plan: Double it.\n#E1 = Calculator[21 * 2]\n")
    assert main(["check", "--from", "rewoo", str(path)]) == 0
    assert main(["fmt", "--from", "rewoo", str(path)]) == 0
    assert 'step E1 = calculate(expression: "21 * 2")' in capsys.readouterr().out
    assert main(["run", "--from", "rewoo", str(path), "--json"]) == 0
    assert '"E1": 42.0' in capsys.readouterr().out

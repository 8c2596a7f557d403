"""Generated plans for benchmarks: chains, wide fan-outs and random layered DAGs."""

from __future__ import annotations

import random


def chain_plan(n: int) -> str:
    lines = ["plan chain", 'step s0: float = calculate(expression: "1")']
    lines += [
        f'step s{i}: float = calculate(expression: "{{{{ s{i - 1} }}}} + 1")' for i in range(1, n)
    ]
    lines.append(f"output s{n - 1}")
    return "\n".join(lines) + "\n"


def wide_plan(n: int) -> str:
    lines = ["plan wide", 'step root: float = calculate(expression: "1")']
    lines += [
        f'step s{i}: float = calculate(expression: "{{{{ root }}}} * {i}")' for i in range(1, n - 1)
    ]
    lines.append(
        f'step sink: str = search(query: "total") after {", ".join(f"s{i}" for i in range(1, n - 1))}'
    )
    lines.append("output sink")
    return "\n".join(lines) + "\n"


def random_plan(n: int, seed: int = 7, max_deps: int = 3, layers: int | None = None) -> str:
    rng = random.Random(seed)
    layers = layers or max(2, int(n**0.5))
    per_layer = max(1, n // layers)
    lines = ["plan random_dag"]
    for i in range(n):
        layer = i // per_layer
        if layer == 0:
            lines.append(f'step s{i}: float = calculate(expression: "{i}")')
            continue
        low = (layer - 1) * per_layer
        deps = sorted(
            {rng.randrange(low, layer * per_layer) for _ in range(rng.randint(1, max_deps))}
        )
        expression = " + ".join(f"{{{{ s{d} }}}}" for d in deps)
        lines.append(f'step s{i}: float = calculate(expression: "{expression}")')
    return "\n".join(lines) + "\n"


SHAPES = {"chain": chain_plan, "wide": wide_plan, "random": random_plan}

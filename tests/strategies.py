"""hypothesis strategies for Plan IR values (used by round-trip and fuzz tests)."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from dsl.ir import FanOut, InputDecl, Plan, RecordType, Ref, Step

RESERVED = {"true", "false", "null"}
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in RESERVED
)
types = st.recursive(
    st.sampled_from(["str", "int", "float", "bool", "json"]),
    lambda inner: st.one_of(
        inner.map(lambda t: f"list[{t}]"),
        inner.map(lambda t: f"dict[str, {t}]"),
    ),
    max_leaves=3,
).flatmap(lambda t: st.sampled_from([t, t + "?"]))
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)
multiline = st.lists(
    st.text(alphabet=string.ascii_letters + " {}:.,-'\"\t", max_size=15), min_size=2, max_size=4
).map("\n".join)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), floats, text, multiline
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=6,
)
refs = st.builds(
    lambda root, path: Ref(ref=".".join([root, *path])), names, st.lists(names, max_size=2)
)
arg_values = st.recursive(
    st.one_of(scalars, refs),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=6,
)
durations = st.one_of(
    st.integers(1, 10_000).map(float),
    st.integers(1, 999).map(lambda ms: ms / 1000),
    st.floats(0.001, 1e5, allow_nan=False).map(lambda f: round(f, 3)).filter(lambda f: f > 0),
)

step_settings = dict(
    type=st.one_of(st.none(), types),
    for_each=st.one_of(st.none(), st.builds(FanOut, var=names, over=refs)),
    after=st.lists(names, max_size=3).map(tuple),
    tier=st.one_of(st.none(), names),
    retry=st.integers(0, 100),
    timeout_s=st.one_of(st.none(), durations),
    on_error=st.one_of(st.just("fail"), st.just("skip"), names),
    description=st.one_of(st.none(), text, multiline),
    executor=st.one_of(st.none(), st.sampled_from(["llm", "agent"])),
)
# `agent(task:, tools: [...])`: inside `tools` bare names are tool names (strings in the
# IR), so agent steps get their own strategy and other steps never call `agent`.
agent_steps = st.builds(
    Step,
    id=names,
    tool=st.just("agent"),
    args=st.fixed_dictionaries(
        {"task": st.one_of(text, multiline), "tools": st.lists(names, min_size=1, max_size=3)},
        optional={"max_iterations": st.integers(1, 50), "max_cost_usd": floats},
    ),
    **step_settings,
)

steps = st.builds(
    Step,
    id=names,
    tool=names.filter(lambda n: n != "agent"),
    args=st.dictionaries(
        names.filter(lambda n: n not in ("tier", "model")), arg_values, max_size=3
    ),
    type=st.one_of(st.none(), types),
    for_each=st.one_of(st.none(), st.builds(FanOut, var=names, over=refs)),
    after=st.lists(names, max_size=3).map(tuple),
    tier=st.one_of(st.none(), names),
    model=st.one_of(st.none(), text),
    task=st.one_of(
        st.none(), st.sampled_from(["search", "analyze", "code", "reasoning", "writing"])
    ),
    retry=st.integers(0, 100),
    timeout_s=st.one_of(st.none(), durations),
    when=st.one_of(st.none(), text),
    on_error=st.one_of(st.just("fail"), st.just("skip"), names),
    check=st.one_of(st.none(), text),
    description=st.one_of(st.none(), text, multiline),
    cache=st.booleans(),
    approve=st.booleans(),
    executor=step_settings["executor"],
)

plans = st.builds(
    Plan,
    name=names,
    goal=st.one_of(st.none(), text, multiline),
    inputs=st.lists(
        st.builds(
            InputDecl,
            name=names,
            type=types,
            default=json_values,
            description=st.one_of(st.none(), text),
        ),
        max_size=3,
    ).map(tuple),
    tiers=st.dictionaries(names, text, max_size=3),
    types=st.lists(
        st.builds(RecordType, name=names, fields=st.dictionaries(names, types, max_size=3)),
        max_size=2,
    ).map(tuple),
    steps=st.lists(st.one_of(steps, agent_steps), max_size=4).map(tuple),
    outputs=st.lists(names, max_size=3).map(tuple),
    expected_cost_usd=st.one_of(st.none(), st.floats(0, 1000, allow_nan=False)),
)

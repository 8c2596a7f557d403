"""The scheduler's bookkeeping: which steps are ready, running, done, or skipped.

A plain object with no I/O, tested on its own; `engine.run.driver` runs steps around it.
The DAG is held as integer ids with successor lists and in-degree counters, so the
hot loop touches only lists. A step becomes ready the moment its last dependency
finishes (no supersteps). When more steps are ready than there are slots, the one with
the highest priority starts first: its remaining critical path, kept current by
`engine.run.latency.Priorities`. Slots are bounded globally and per
limit group (a tool, a tier, a model).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum


class State(IntEnum):
    PENDING = 0  # waiting for dependencies
    READY = 1  # in the ready heap
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    SKIPPED = 5
    CANCELLED = 6
    STANDBY = 7  # a fallback that runs only if its primary fails
    EXPANDED = 8  # a fan-out parent waiting for its items
    FALLING_BACK = 9  # failed, waiting for its fallback to finish


# Bound once: a member read through the enum class costs more than a module global, and
# these are read per step.
_PENDING = State.PENDING
_READY = State.READY
_RUNNING = State.RUNNING
_SUCCEEDED = State.SUCCEEDED


class Schedule:
    """Ready-queue bookkeeping over a DAG of `n` nodes (plus fan-out items added later)."""

    __slots__ = (
        "_heap",
        "_limits",
        "_seq",
        "_unbounded",
        "children",
        "doomed",
        "group_running",
        "groups",
        "indegree",
        "initially_skipped",
        "max_parallel",
        "names",
        "open_count",
        "parent",
        "primary_of",
        "priority",
        "remaining_items",
        "running",
        "state",
        "successors",
        "tolerated",
    )

    def __init__(
        self,
        names: Sequence[str],
        deps: Sequence[Sequence[int]],
        *,
        priority: Sequence[float] | None = None,
        groups: Sequence[Sequence[str]] | None = None,
        limits: Mapping[str, int] | None = None,
        max_parallel: int = 0,
        standby: Iterable[int] = (),
        finished: Mapping[int, State] | None = None,
        successors: Sequence[list[int]] | None = None,
    ):
        count = len(names)
        self.names: list[str] = list(names)
        self.indegree: list[int] = [len(needs) for needs in deps]
        if successors is not None:
            # The compiled plan's lists (dsl/dag.py `CompactDag`), read, never changed:
            # fan-out items get lists of their own, appended to this copy of the outer one.
            self.successors: list[list[int]] = list(successors)
        else:
            self.successors = [[] for _ in range(count)]
            for node, needs in enumerate(deps):
                for need in needs:
                    self.successors[need].append(node)
        self.priority: list[float] = list(priority) if priority is not None else [0.0] * count
        self.groups: list[tuple[str, ...]] = [tuple(g) for g in groups] if groups else [()] * count
        self._limits: dict[str, int] = {k: v for k, v in (limits or {}).items() if v > 0}
        self.group_running: dict[str, int] = dict.fromkeys(self._limits, 0)
        self.max_parallel = max_parallel if max_parallel > 0 else 1 << 30
        self.state: list[State] = [State.PENDING] * count
        self.parent: list[int] = [-1] * count
        self.children: dict[int, list[int]] = {}
        self.remaining_items: dict[int, int] = {}
        self.primary_of: dict[int, int] = {}  # activated fallback -> its primary
        self.tolerated: set[int] = set()  # failed steps whose dependents still run
        self.doomed: set[int] = set()  # standby fallbacks whose inputs failed
        self.running = 0
        self.open_count = 0  # nodes not yet in a final state (standby excluded)
        self._heap: list[tuple[float, int, int]] = []
        self._seq = 0
        # With no limit of any kind every ready node starts at once, so order is moot
        # and a plain list replaces the priority heap (the common embedded case).
        self._unbounded = not self._limits and self.max_parallel >= 1 << 30
        for node in standby:
            self.state[node] = State.STANDBY
        # Steps finished in an earlier round (before a replan) are final from the start:
        # a success or a skip releases its dependents, a failure skips them.
        presets = dict(finished or {})
        for node, state in presets.items():
            self.state[node] = state
            if state != State.FAILED:
                for succ in self.successors[node]:
                    self.indegree[succ] -= 1
        # Once per node: counted and filtered in C, then the roots pushed in plan order.
        states = self.state
        self.open_count = states.count(_PENDING)
        for node in [n for n, d in enumerate(self.indegree) if d == 0]:
            if states[node] == _PENDING:
                self._push(node)
        self.initially_skipped: list[int] = []
        for node, state in presets.items():
            if state == State.FAILED:
                self.initially_skipped.extend(self._skip_dependents(node))

    # --- queries ---------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Every node reached a final state (standby fallbacks that never ran excluded)."""
        return self.open_count == 0

    # --- transitions ---------------------------------------------------------------------
    def _push(self, node: int) -> None:
        self.state[node] = _READY
        self._seq += 1
        if self._unbounded:
            self._heap.append((0.0, self._seq, node))
        else:
            heapq.heappush(self._heap, (-self.priority[node], self._seq, node))

    def _fits(self, node: int) -> bool:
        limits = self._limits
        if not limits:
            return True
        running = self.group_running
        for group in self.groups[node]:
            limit = limits.get(group)
            if limit is not None and running[group] >= limit:
                return False
        return True

    def start_ready(self) -> list[int]:
        """Take ready nodes that fit the limits, most critical first; mark them running."""
        if self._unbounded:
            started = [entry[2] for entry in self._heap]
            self._heap = []
            state = self.state
            for node in started:
                state[node] = _RUNNING
            self.running += len(started)
            return started
        heap = self._heap
        if not self._limits:  # only the slot count bounds: nothing is blocked
            started = []
            state = self.state
            running, cap = self.running, self.max_parallel
            while heap and running < cap:
                node = heapq.heappop(heap)[2]
                state[node] = _RUNNING
                running += 1
                started.append(node)
            self.running = running
            return started
        started = []
        blocked: list[tuple[float, int, int]] = []
        while heap and self.running < self.max_parallel:
            entry = heapq.heappop(heap)
            node = entry[2]
            if not self._fits(node):
                blocked.append(entry)
                continue
            self.state[node] = State.RUNNING
            self.running += 1
            if self._limits:
                for group in self.groups[node]:
                    if group in self.group_running:
                        self.group_running[group] += 1
            started.append(node)
        for entry in blocked:
            heapq.heappush(heap, entry)
        return started

    def _release(self, node: int) -> None:
        self.running -= 1
        if self._limits:
            for group in self.groups[node]:
                if group in self.group_running:
                    self.group_running[group] -= 1

    def succeeded(self, node: int) -> list[int]:
        """A running node finished well; returns the nodes that are now complete upstream.

        The return value lists fan-out parents completed by this item (and, transitively,
        primaries completed by their fallback), so the driver can assemble their results.
        """
        self._release(node)
        return self._complete(node, _SUCCEEDED)

    def failed(self, node: int, *, tolerate: bool = False) -> tuple[list[int], list[int]]:
        """A running node failed for good.

        `tolerate` (on_error: skip) keeps its dependents running. Returns (completed
        parents, nodes skipped because they depended on it).
        """
        self._release(node)
        if tolerate:
            self.tolerated.add(node)
            return self._complete(node, State.FAILED), []
        completed = self._complete(node, State.FAILED, propagate=False)
        return completed, self._skip_dependents(node)

    def skip(self, node: int) -> list[int]:
        """A running node was skipped by its `when` condition; dependents still run."""
        self._release(node)
        return self._complete(node, State.SKIPPED)

    def _complete(self, node: int, state: State, propagate: bool = True) -> list[int]:
        self.state[node] = state
        self.open_count -= 1
        completed: list[int] = []
        parent = self.parent[node]
        if parent >= 0:
            self.remaining_items[parent] -= 1
            if self.remaining_items[parent] == 0:
                completed.append(parent)
            return completed
        if propagate:
            self._release_successors(node)
        return completed

    def _release_successors(self, node: int) -> None:
        indegree, state, push = self.indegree, self.state, self._push
        for succ in self.successors[node]:
            left = indegree[succ] = indegree[succ] - 1
            if left == 0 and state[succ] == _PENDING:
                push(succ)

    def _skip_dependents(self, node: int) -> list[int]:
        skipped: list[int] = []
        stack = list(self.successors[node])
        state = self.state
        while stack:
            succ = stack.pop()
            # A successor of a node that just finished cannot be READY yet.
            if state[succ] == State.PENDING:
                state[succ] = State.SKIPPED
                self.open_count -= 1
                skipped.append(succ)
                stack.extend(self.successors[succ])
            elif state[succ] == State.STANDBY:
                self.doomed.add(succ)
        return skipped

    @property
    def uses_priority(self) -> bool:
        """Whether priorities order anything (with no slot limit every ready node starts)."""
        return not self._unbounded

    def reprioritize(self, priority: Mapping[int, float] | Sequence[float]) -> int:
        """New priorities for some of the plan's nodes (node -> value, or a list for all).

        Fan-out items take their parent's new value; ready nodes are re-keyed (only when
        one of them changed); nodes that become ready later use the new values. Returns
        how many ready entries were re-keyed (the work it took).
        """
        own = self.priority
        state = self.state
        if not isinstance(priority, Mapping):
            # A value for every plan node (the run's first priorities): one slice, then
            # fan-out items take their parent's; every ready entry is re-keyed.
            count = len(priority)
            own[:count] = priority
            for node, items in self.children.items():
                for item in items:
                    if item >= count:
                        own[item] = own[node]
            rekey = bool(self._heap)
            values: Mapping[int, float] = {}
        else:
            values = priority
            rekey = False
        for node, value in values.items():
            own[node] = value
            rekey = rekey or state[node] == State.READY
            for item in self.children.get(node, ()):
                own[item] = value
                rekey = rekey or state[item] == State.READY
        if not rekey or self._unbounded:
            return 0
        self._heap = [(-own[node], seq, node) for _, seq, node in self._heap]
        heapq.heapify(self._heap)
        return len(self._heap)

    # --- fan-out ----------------------------------------------------------------------------
    def expand(self, node: int, count: int) -> list[int]:
        """Turn a running fan-out node into `count` item nodes, ready at once.

        The parent gives up its slot; each item takes one. With zero items the parent
        is complete immediately (the driver sees it in the returned empty list and
        finishes it with `finish_parent`).
        """
        self._release(node)
        self.state[node] = State.EXPANDED
        items: list[int] = []
        for _ in range(count):
            item = len(self.names)
            self.names.append(f"{self.names[node]}[{len(items)}]")
            self.successors.append([])
            self.indegree.append(0)
            self.priority.append(self.priority[node])
            self.groups.append(self.groups[node])
            self.state.append(State.PENDING)
            self.parent.append(node)
            self.open_count += 1
            items.append(item)
            self._push(item)
        self.children[node] = items
        self.remaining_items[node] = count
        return items

    def finish_parent(self, node: int, ok: bool, *, tolerate: bool = False) -> list[int]:
        """Complete an expanded fan-out node once its items are done (the driver decides ok)."""
        if ok or tolerate:
            if not ok:
                self.tolerated.add(node)
            self.state[node] = State.SUCCEEDED if ok else State.FAILED
            self.open_count -= 1
            self._release_successors(node)
            return []
        self.state[node] = State.FAILED
        self.open_count -= 1
        return self._skip_dependents(node)

    # --- fallbacks -------------------------------------------------------------------------
    def can_fall_back(self, fallback: int) -> bool:
        """Whether a standby fallback can still run (none of its inputs failed)."""
        return self.state[fallback] == State.STANDBY and fallback not in self.doomed

    def activate_fallback(self, primary: int, fallback: int, *, holds_slot: bool = True) -> None:
        """The primary failed: release its slot (if it holds one) and run its fallback."""
        if holds_slot:
            self._release(primary)
        self.state[primary] = State.FALLING_BACK
        self.primary_of[fallback] = primary
        self.state[fallback] = State.PENDING
        self.open_count += 1
        if self.indegree[fallback] == 0:
            self._push(fallback)

    def fallback_done(self, fallback: int, ok: bool) -> tuple[int, list[int]]:
        """A fallback finished: its primary completes with the same outcome."""
        primary = self.primary_of.pop(fallback)
        if ok:
            self.state[primary] = State.SUCCEEDED
            self.open_count -= 1
            self._release_successors(primary)
            return primary, []
        self.state[primary] = State.FAILED
        self.open_count -= 1
        return primary, self._skip_dependents(primary)

    # --- cancellation ---------------------------------------------------------------------------
    def cancel_all(self) -> list[int]:
        """Mark every open node cancelled (running ones included); returns them."""
        if self.open_count == 0 and self.running == 0:
            # Every node is final (the driver's clean-up after a finished run): no walk.
            self._heap.clear()
            return []
        cancelled: list[int] = []
        for node, state in enumerate(self.state):
            if state in (
                State.PENDING,
                State.READY,
                State.RUNNING,
                State.EXPANDED,
                State.FALLING_BACK,
            ):
                self.state[node] = State.CANCELLED
                cancelled.append(node)
        self._heap.clear()
        self.running = 0
        self.open_count = 0
        for group in self.group_running:
            self.group_running[group] = 0
        return cancelled

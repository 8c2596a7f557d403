"""The built-in tools, including hostile input."""

from __future__ import annotations

import asyncio
import http.server
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stdlib_tools import ToolContext
from stdlib_tools.calculator import CalculationError, evaluate
from stdlib_tools.search import CorpusIndex
from stdlib_tools.stdlib import (
    calculate,
    json_query,
    list_files,
    parse_json,
    read_file,
    search,
    write_file,
)
from stdlib_tools.web import NetworkNotAllowed, fetch
from stdlib_tools.workspace import WorkspaceError

# --- calculate -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("150000 * 0.30", 45000.0),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("-2 ** 2", -4),
        ("7 // 2 + 7 % 2", 4),
        ("2 ^ 10", 1024),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("round(2 / 3, 3)", 0.667),
        ("sqrt(16) + abs(-2)", 6.0),
        ("1e3 / 8", 125.0),
    ],
)
def test_calculate_arithmetic(expression: str, value: float) -> None:
    """Arithmetic, precedence, unary minus and the allowed functions."""
    assert calculate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('echo pwned')", "not allowed"),
        ("().__class__.__mro__", "not allowed"),
        ("x + 1", "names are not allowed"),
        ("open('/etc/passwd')", "function `open` is not allowed"),
        ("[1, 2]", "not allowed"),
        ("'a' * 3", "only numbers"),
        ("1 / 0", "division by zero"),
        ("9**9**9**9", "too large"),
        ("10 ** 1000", "too large"),
        ("2 ** 4000 * 2 ** 4000", "too large"),
        ("(" * 500 + "1" + ")" * 500, "nest"),
        ("1 +", "not an arithmetic expression"),
        ("150,000 * 2", "commas"),
        ("lambda: 1", "not allowed"),
        ("", "empty"),
        ("1" * 20_000, "longer than"),
        ("sqrt(-1)", "negative"),
        ("(-8) ** 0.5", "not a real number"),
    ],
)
def test_calculate_refuses_everything_else(expression: str, message: str) -> None:
    """Names, attributes, calls, huge powers and deep nesting fail at once, clearly."""
    with pytest.raises(CalculationError, match=message):
        evaluate(expression)


@given(st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6), st.sampled_from(["+", "-", "*"]))
def test_calculate_matches_python_on_integers(a: int, b: int, op: str) -> None:
    """For plain integer arithmetic the result is Python's."""
    expected = {"+": a + b, "-": a - b, "*": a * b}[op]
    assert evaluate(f"{a} {op} ({b})") == expected


@given(st.text(max_size=60))
def test_calculate_never_crashes(text: str) -> None:
    """Any text gives a number or a CalculationError, nothing else."""
    try:
        result = evaluate(text)
    except CalculationError:
        return
    assert isinstance(result, int | float)
    assert not (isinstance(result, float) and math.isnan(result))


def test_calculate_takes_long_flat_expressions() -> None:
    """A flat sum of 1,000 (or 4,000) terms is arithmetic, not "nesting"."""
    assert calculate(" + ".join(["1"] * 1000)) == 1000.0
    assert evaluate("-".join(["2"] * 4000)) == 2 - 2 * 3999
    assert evaluate("*".join(["1.5"] * 100)) == pytest.approx(1.5**100)


@pytest.mark.parametrize("expression", ["10**400", "10**300 * 10**100", "2**1100 + 1"])
def test_huge_results_are_a_clear_calculator_error(expression: str) -> None:
    """Results a float cannot hold are a CalculationError, never Python's OverflowError."""
    with pytest.raises(CalculationError, match="digits") as info:
        calculate(expression)
    assert "int too large" not in str(info.value)


_small = st.integers(-50, 50)
# Magnitudes in [1e-3, 1e3] over at most 12 leaves keep every intermediate finite, so
# Python's value (which may pass through inf) is the calculator's.
_leaf = st.one_of(
    _small.map(str),
    st.floats(1e-3, 1e3).map(repr),
    st.floats(-1e3, -1e-3).map(repr),
)
_tree = st.recursive(
    _leaf,
    lambda inner: st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%"]), inner).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    ),
    max_leaves=12,
)


@given(_tree)
def test_calculate_agrees_with_python_arithmetic(text: str) -> None:
    """Any tree of + - * / // % over numbers gives Python's value, or a CalculationError
    exactly when Python would raise (division by zero, overflow)."""
    try:
        expected = eval(text, {"__builtins__": {}})
    except (ZeroDivisionError, OverflowError):
        with pytest.raises(CalculationError):
            evaluate(text)
        return
    if isinstance(expected, float) and not math.isfinite(expected):
        with pytest.raises(CalculationError):
            evaluate(text)
        return
    assert evaluate(text) == pytest.approx(expected, rel=1e-9, nan_ok=False)


@given(st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=1500))
def test_flat_sums_of_any_length(terms: list[int]) -> None:
    """Sums of up to 1,500 terms evaluate to Python's sum."""
    text = " + ".join(f"({t})" for t in terms)
    if len(text) > 10_000:
        with pytest.raises(CalculationError, match="longer than"):
            evaluate(text)
    else:
        assert evaluate(text) == sum(terms)


@given(st.integers(0, 2000), st.integers(-5, 5000))
def test_powers_are_bounded_and_clear(base: int, exponent: int) -> None:
    """Any power is a number or a CalculationError naming the problem."""
    try:
        value = calculate(f"{base} ** {exponent}")
    except CalculationError as err:
        assert "too large" in str(err) or "digits" in str(err) or "zero" in str(err)
        return
    assert math.isfinite(value)


# --- files -------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> ToolContext:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "notes.txt").write_text("hello")
    (tmp_path / "secret.txt").write_text("outside")
    return ToolContext(workspace=root)


def test_files_round_trip(workspace: ToolContext) -> None:
    """write_file then read_file and list_files, inside the workspace."""
    assert write_file("out/report.md", "# Report", workspace) == "out/report.md"
    assert read_file("out/report.md", workspace) == "# Report"
    assert list_files(workspace) == ["notes.txt", "out/report.md"]
    assert list_files(workspace, "*.txt") == ["notes.txt"]


@pytest.mark.parametrize(
    "path", ["../secret.txt", "/etc/passwd", "a/../../secret.txt", "..\\secret.txt", "C:\\x"]
)
def test_paths_cannot_leave_the_workspace(workspace: ToolContext, path: str) -> None:
    """`..` and absolute paths are refused."""
    with pytest.raises(WorkspaceError):
        read_file(path, workspace)
    with pytest.raises(WorkspaceError):
        write_file(path, "x", workspace)


def test_symlinks_out_of_the_workspace_are_refused(workspace: ToolContext, tmp_path: Path) -> None:
    """A symlink inside the workspace that points outside is refused."""
    os.symlink(tmp_path / "secret.txt", workspace.workspace / "link.txt")
    os.symlink(tmp_path, workspace.workspace / "escape")
    with pytest.raises(WorkspaceError, match="outside"):
        read_file("link.txt", workspace)
    with pytest.raises(WorkspaceError, match="outside"):
        write_file("escape/new.txt", "x", workspace)
    assert "link.txt" not in list_files(workspace)
    with pytest.raises(WorkspaceError):
        list_files(workspace, "../*")


def test_missing_file_is_a_clear_error(workspace: ToolContext) -> None:
    """Reading a missing file names it."""
    with pytest.raises(FileNotFoundError, match=r"`nope\.txt` is not a file"):
        read_file("nope.txt", workspace)


def test_write_file_ignores_a_planted_temp_symlink(workspace: ToolContext, tmp_path: Path) -> None:
    """A symlink planted where the old fixed temp name was cannot redirect the write."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for name in (".out.txt.planfile-tmp", ".out.txt.tmp", "out.txt.tmp"):
        os.symlink(victim, workspace.workspace / name)
    write_file("out.txt", "new", workspace)
    assert victim.read_text() == "keep me"
    assert (workspace.workspace / "out.txt").read_text() == "new"


def test_no_symlink_is_followed_on_the_path(workspace: ToolContext, tmp_path: Path) -> None:
    """A symlinked folder, even one pointing inside the workspace, is never walked
    through; a symlink at the target is refused rather than written through."""
    (workspace.workspace / "real").mkdir()
    os.symlink(workspace.workspace / "real", workspace.workspace / "alias")
    os.symlink(tmp_path / "secret.txt", workspace.workspace / "out.txt")
    with pytest.raises(WorkspaceError, match="symlink"):
        write_file("alias/x.txt", "x", workspace)
    with pytest.raises(WorkspaceError, match="symlink"):
        read_file("alias/x.txt", workspace)
    with pytest.raises(WorkspaceError, match="symlink"):
        write_file("out.txt", "x", workspace)
    assert (tmp_path / "secret.txt").read_text() == "outside"
    assert list_files(workspace, "**/*") == ["notes.txt"]


def test_concurrent_writers_end_with_one_complete_file(workspace: ToolContext) -> None:
    """Many threads writing one path: no error, no temp files left, one whole version."""
    texts = [f"{i}:" + str(i) * 20_000 for i in range(16)]
    errors: list[BaseException] = []

    def write(text: str) -> None:
        try:
            write_file("report.txt", text, workspace)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert read_file("report.txt", workspace) in texts
    assert sorted(os.listdir(workspace.workspace)) == ["notes.txt", "report.txt"]


def test_list_files_patterns_are_bounded(workspace: ToolContext) -> None:
    """Repeated `**` costs no more than one; the walk matches pathlib's files."""
    import time

    root = workspace.workspace
    for a in range(8):
        for b in range(8):
            folder = root / f"d{a}" / f"e{b}"
            folder.mkdir(parents=True)
            for c in range(8):
                (folder / f"f{c}.txt").write_text("x")
    started = time.perf_counter()
    deep = list_files(workspace, "**/**/**/**/**/**/**/**/**/**/**/**/*")
    assert time.perf_counter() - started < 2
    assert deep == list_files(workspace, "**/*") and len(deep) == 8 * 8 * 8 + 1
    assert list_files(workspace, "d1/*/f7.txt") == [f"d1/e{b}/f7.txt" for b in range(8)]
    assert list_files(workspace, "d2/**/f0.txt") == [f"d2/e{b}/f0.txt" for b in range(8)]
    assert list_files(workspace, "*.txt") == ["notes.txt"]
    with pytest.raises(WorkspaceError):
        list_files(workspace, "a/" * 40 + "*")


def test_list_files_stops_at_the_step_timeout(workspace: ToolContext) -> None:
    """The walk runs in a thread no timeout can kill, so it stops itself at the step's
    timeout."""
    from types import SimpleNamespace

    root = workspace.workspace
    for a in range(40):
        folder = root / f"d{a}"
        folder.mkdir()
        for c in range(100):
            (folder / f"f{c}.txt").write_text("x")
    step = SimpleNamespace(timeout_s=1e-9)
    ctx = ToolContext(workspace=root, services={"step": step})
    with pytest.raises(TimeoutError, match="time limit"):
        list_files(ctx, "**/*")


# --- search --------------------------------------------------------------------------


def test_search_ranks_the_relevant_passage(tmp_path: Path) -> None:
    """BM25 over the shipped corpus finds the passage with its source."""
    ctx = ToolContext()
    text = search("Texas state income tax", ctx, k=1)
    assert "no state personal income tax" in text and "taxes_california_texas.md" in text


def test_search_index_is_rebuilt_when_files_change(tmp_path: Path) -> None:
    """Adding a file to the corpus makes it searchable on the next query."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("# Apples\n\nApples are red.")
    index = CorpusIndex(corpus, tmp_path / "cache")
    assert [h.source for h in index.search("apples")] == ["a.md"]
    assert index.search("bananas") == []
    (corpus / "b.html").write_text("<html><script>x()</script><p>Bananas are yellow.</p></html>")
    hits = index.search("bananas")
    assert [h.source for h in hits] == ["b.md".replace(".md", ".html")]
    assert "x()" not in hits[0].text


def test_search_survives_query_syntax(tmp_path: Path) -> None:
    """FTS5 operators and quotes in a query are treated as words."""
    ctx = ToolContext(
        settings={"corpus": str(Path(__file__).parent.parent / "examples" / "corpus")}
    )
    assert isinstance(search('NEAR("x" AND) OR * "', ctx), str)
    assert search("", ctx) == ""


# --- data tools --------------------------------------------------------------------


def test_json_query_and_parse_json() -> None:
    """JMESPath selection; JSON parsing with clear errors."""
    data = parse_json('{"items": [{"n": "a", "p": 5}, {"n": "b", "p": 15}]}')
    assert json_query(data, "items[?p < `10`].n") == ["a"]
    with pytest.raises(ValueError, match="bad JMESPath"):
        json_query(data, "items[?")
    with pytest.raises(ValueError, match="not JSON"):
        parse_json("{nope")
    with pytest.raises(ValueError, match="not a JSON number"):
        parse_json("[NaN]")


# --- http_get ---------------------------------------------------------------------------


@pytest.fixture
def loopback_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/big":
                body = b"x" * 3_000_000
            elif self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://example.com/")
                self.end_headers()
                return
            else:
                body = b"hello from loopback"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_get_is_off_by_default(loopback_server: str) -> None:
    """With no allowlist, nothing is fetched and the message says how to allow it."""
    with pytest.raises(NetworkNotAllowed, match="--allow-host"):
        asyncio.run(fetch(loopback_server, {}))


def test_http_get_allowlist_size_cap_and_redirects(loopback_server: str) -> None:
    """Allowed hosts are fetched; other hosts, oversized bodies and redirects are refused."""
    allowed = {"http_allowlist": ["127.0.0.1"]}
    assert asyncio.run(fetch(loopback_server + "/", allowed)) == "hello from loopback"
    with pytest.raises(NetworkNotAllowed, match="not on the allowlist"):
        asyncio.run(fetch(loopback_server, {"http_allowlist": ["example.com"]}))
    with pytest.raises(ValueError, match="over"):
        asyncio.run(fetch(loopback_server + "/big", allowed))
    with pytest.raises(NetworkNotAllowed, match="redirects"):
        asyncio.run(fetch(loopback_server + "/redirect", allowed))
    with pytest.raises(NetworkNotAllowed, match="not an http"):
        asyncio.run(fetch("file:///etc/passwd", allowed))

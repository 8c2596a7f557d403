"""lark's contextual lexer with its per-token loop made cheap: same tokens, same errors.

lark's `ContextualLexer` keeps one `BasicLexer` per parser state (each matching only
the terminals that state accepts, so a keyword such as `timeout` is a NAME where no
keyword fits). Its loop cost ~2.5 µs a token: a method call per token and per ignored
run of whitespace, a `LineCounter`, a keyword regex per NAME and `Token.__new__`'s
keyword handling. On a 10,000-step plan (110,000 tokens) that was 0.28 s of a 0.43 s
parse; this loop takes ~1.4 µs a token (0.15 s).

`PlanLexer` keeps every decision lark makes and only changes how it is carried out:

- the same per-state compiled patterns and keyword ("unless") callbacks, built by
  lark from the same parse table (so the tokens are the same by construction);
- positions (line, column, end) kept in local integers instead of a `LineCounter`;
- a keyword callback made of plain strings becomes a dict lookup, others are called;
- on anything that does not match, the lexer state is synchronised and lark's own
  `ContextualLexer.lex` takes over, so every syntax error is raised by lark exactly as
  before (same exception, line, column, expected set, token history).

It is plugged in with lark's `_plugins={"ContextualLexer": PlanLexer}` option, which
the cached parser tables do not depend on.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any, NamedTuple, cast

from lark import Token
from lark.lexer import (
    BasicLexer,
    ContextualLexer,
    LexerState,
    LineCounter,
    PatternStr,
    UnlessCallback,
)
from lark.parsers.lalr_parser import ParserState


class _StateScanner(NamedTuple):
    """What one parser state's lexer needs: its pattern and what follows a match."""

    match: Any  # the compiled alternation's bound `match(text, pos, end)`
    keywords: dict[str, dict[str, str]]
    """terminal -> {text: keyword terminal}: lark's `UnlessCallback`s as lookups."""
    callbacks: dict[str, Any]
    """terminal -> any other callback, called on the token as lark would."""


_new_str = str.__new__


def _state_scanner(lexer: BasicLexer) -> _StateScanner | None:
    """The scanner of one of lark's basic lexers, or None where lark's loop is needed."""
    patterns = getattr(lexer.scanner, "_mres", None)  # lark's internals, as of lark 1.2-1.3
    if patterns is None or len(patterns) != 1:  # over 100 terminals: lark splits it
        return None
    keywords: dict[str, dict[str, str]] = {}
    callbacks: dict[str, Any] = {}
    for terminal, callback in lexer.callback.items():
        unless = getattr(callback, "scanner", None) if type(callback) is UnlessCallback else None
        if (
            unless is not None
            and not getattr(unless, "g_regex_flags", True)
            and all(
                isinstance(t.pattern, PatternStr) and not t.pattern.flags for t in unless.terminals
            )
        ):
            keywords[terminal] = {t.pattern.value: t.name for t in unless.terminals}
        else:
            callbacks[terminal] = callback
    return _StateScanner(patterns[0].match, keywords, callbacks)


class PlanLexer(ContextualLexer):
    """A `ContextualLexer` whose token loop runs in one frame with local positions."""

    def __init__(
        self, conf: Any, states: dict[int, Collection[str]], always_accept: Collection[str] = ()
    ) -> None:
        super().__init__(conf, states, always_accept)
        root = cast(BasicLexer, self.root_lexer)  # lark builds BasicLexers (no plugin for them)
        self._scanners: dict[int, _StateScanner | None] = {}
        self._ignore = root.ignore_types
        self._newline_types = root.newline_types
        # Bytes input and user lexer callbacks are lark's own loop's business (unused here),
        # and so is any lark whose lexer state is not kept as this loop expects.
        self._own_loop = (
            not conf.use_bytes
            and not root.user_callbacks
            and {"char_pos", "line", "line_start_pos", "column"} <= set(LineCounter.__slots__)
            and "state_stack" in ParserState.__slots__
        )

    def _scanner(self, state: int) -> _StateScanner | None:
        # Built on first use: lark compiles each state's pattern lazily too, and a small
        # plan visits few states (start-up matters more than the first token).
        try:
            return self._scanners[state]
        except KeyError:
            lexer = cast(BasicLexer, self.lexers[state])
            scanner = self._scanners[state] = _state_scanner(lexer)
            return scanner

    def lex(self, lexer_state: LexerState, parser_state: Any) -> Iterator[Token]:
        if not self._own_loop:
            yield from super().lex(lexer_state, parser_state)
            return
        text_slice = lexer_state.text
        text: str = text_slice.text
        end: int = text_slice.end
        counter = lexer_state.line_ctr
        pos = counter.char_pos
        line = counter.line
        line_start = counter.line_start_pos
        state_stack = parser_state.state_stack  # lark mutates this list in place
        scanners = self._scanners
        ignore = self._ignore
        newline_types = self._newline_types
        last_token = lexer_state.last_token
        try:
            while pos < end:
                state = state_stack[-1]
                scanner = scanners.get(state)
                if scanner is None:
                    scanner = self._scanner(state)
                    if scanner is None:
                        break  # lark's own loop lexes the rest
                match, keywords, callbacks = scanner
                found = match(text, pos, end)
                if found is None:
                    break  # lark raises the error
                type_ = found.lastgroup
                start = pos
                pos = found.end()
                if type_ in ignore:
                    if type_ in newline_types:
                        newlines = text.count("\n", start, pos)
                        if newlines:
                            line += newlines
                            line_start = text.rindex("\n", start, pos) + 1
                    continue
                value = found.group()
                start_line = line
                column = start - line_start + 1
                if type_ in newline_types:
                    newlines = value.count("\n")
                    if newlines:
                        line += newlines
                        line_start = start + value.rindex("\n") + 1
                callback = callbacks.get(type_)
                words = keywords.get(type_)
                if words is not None:
                    type_ = words.get(value, type_)
                token = _new_str(Token, value)
                token.type = type_
                token.value = value
                token.start_pos = start
                token.line = start_line
                token.column = column
                token.end_line = line
                token.end_column = pos - line_start + 1
                token.end_pos = pos
                if callback is not None:
                    token = callback(token)
                last_token = token
                yield token
        finally:
            # Hand the position back to lark (also when the parser stops early on an
            # unexpected token), as its own lexer would have left it.
            counter.char_pos = pos
            counter.line = line
            counter.line_start_pos = line_start
            counter.column = pos - line_start + 1
            lexer_state.last_token = last_token
        if pos < end:  # lark reports the error exactly as its own lexer does
            yield from super().lex(lexer_state, parser_state)

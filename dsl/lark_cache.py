"""A lark LALR parser whose tables are built once per grammar and kept on disk.

Building the LALR tables of `plan.lark` takes ~0.2 s, most of `planfile check`'s
start-up; loading them from lark's cache takes a few milliseconds. lark's own
`cache=True` has pitfalls this module avoids:

- it writes a pickle into the shared temp folder, and loading a pickle another local
  user could have put there runs their code: the cache here lives in the user's own
  cache folder (`cache_home()` of dsl/user_cache.py: `$PLANFILE_HOME/cache`, else
  `$XDG_CACHE_HOME/planfile`, else `~/.cache/planfile`; mode 0700);
- lark's cache key includes the value of the `cache` option itself, so the file
  cannot be written under a temporary name and renamed into place (the next process
  would compute another key and rebuild): the path passed is always the final one;
- with a fixed path, a changed grammar or lark would rewrite the file in place, and
  (without the optional `atomicwrites` package) a concurrent reader could see half a
  file: here the file name carries a hash of the grammar, the options, lark's and
  Python's versions, so a file is written once, by the first process that needs it;
- lark checks the grammar's hash on the file's first line and treats a file it cannot
  read (half written, corrupt) as missing: it rebuilds and rewrites it, so the worst
  case of a race between two first runs is one extra build, never a wrong parser;
- the transformer and the lexer plugin are not part of the cache (given again at load).

A cache folder that cannot be created or written only costs the build time: lark
logs its own read and write failures (at a level it keeps silent) and carries on.
`PLANFILE_NO_PARSER_CACHE=1` turns the cache off.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

import lark
from lark import Lark

from dsl.user_cache import cache_home

# Given again at every load and not part of the tables (lark leaves them out too).
_NOT_IN_TABLES = ("transformer", "_plugins")


def cached_lark(grammar: str, name: str, **options: Any) -> Lark:
    """`Lark(grammar, **options)`, with its parse tables cached under `cache_home()`."""
    if os.environ.get("PLANFILE_NO_PARSER_CACHE"):
        return Lark(grammar, **options)
    hashed = {k: v for k, v in options.items() if k not in _NOT_IN_TABLES}
    key = hashlib.sha256(
        repr((grammar, sorted(hashed.items()), lark.__version__, sys.version_info[:2])).encode()
    ).hexdigest()[:20]
    folder = cache_home()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return Lark(grammar, **options)
    return Lark(grammar, cache=str(folder / f"{name}-{key}.lark"), **options)

"""A lark LALR parser whose tables are built once per grammar and kept on disk.

Building the LALR tables of `plan.lark` takes ~0.2 s, most of `planfile check`'s
start-up; loading them from lark's cache takes a few milliseconds. lark's own
`cache=True` has pitfalls this module avoids:

- it writes a pickle into the shared temp folder, and loading a pickle another local
  user could have put there runs their code: the cache here lives in the user's own
  cache folder (`$XDG_CACHE_HOME/planfile`, else `~/.cache/planfile`, mode 0700);
- one fixed file name per grammar is rewritten in place when the grammar or lark
  changes, and without the optional `atomicwrites` package a concurrent reader can
  see half a file: here the file name carries a hash of the grammar, the options,
  lark's and Python's versions (a changed grammar gets a new file, never a rewrite),
  and a new file is written under a temporary name and renamed into place;
- the transformer is not part of lark's cache key (it is given again at load), so a
  changed transformer needs no new cache, and a changed grammar always gets one.

A cache folder that cannot be created or written only costs the build time: lark
logs its own read and write failures (at a level it keeps silent) and carries on.
`PLANFILE_NO_PARSER_CACHE=1` turns the cache off.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import lark
from lark import Lark


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "planfile"


def cached_lark(grammar: str, name: str, **options: Any) -> Lark:
    """`Lark(grammar, **options)`, with its parse tables cached under `cache_folder()`."""
    if os.environ.get("PLANFILE_NO_PARSER_CACHE"):
        return Lark(grammar, **options)
    hashed = {k: v for k, v in options.items() if k != "transformer"}
    key = hashlib.sha256(
        repr((grammar, sorted(hashed.items()), lark.__version__, sys.version_info[:2])).encode()
    ).hexdigest()[:20]
    folder = cache_folder()
    path = folder / f"{name}-{key}.lark"
    if path.is_file():
        return Lark(grammar, cache=str(path), **options)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return Lark(grammar, **options)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    parser = Lark(grammar, cache=str(partial), **options)
    try:
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
    return parser

"""The `search` tool's engine: BM25 full-text search over a local corpus (SQLite FTS5).

A corpus is a folder of text, Markdown and HTML files. Files are split into passages
(paragraphs), indexed once into an FTS5 table cached under the user's data directory,
and re-indexed when any file is added, removed or changed. Web search backends plug in
through `SearchBackend`; none is on by default.
"""

from __future__ import annotations

import hashlib
import html
import re
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".rst")
MAX_FILE_BYTES = 5 * 1024 * 1024
PASSAGE_CHARS = 1200
_WORD = re.compile(r"[\w][\w'-]*", re.UNICODE)
_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Hit:
    """One passage that matched: where it is from and its text."""

    title: str
    source: str
    text: str
    score: float


class SearchBackend(Protocol):
    """The extension point for other search backends (web search, a vector store)."""

    def search(self, query: str, k: int) -> list[Hit]: ...


def _plain_text(path: Path, raw: str) -> str:
    if path.suffix.lower() in (".html", ".htm"):
        raw = html.unescape(_TAGS.sub(" ", raw))
    return raw


def _title(path: Path, text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip().lstrip("#").strip()
        if stripped:
            return stripped[:120]
    return path.stem


def _passages(text: str) -> list[str]:
    """Paragraphs, merged up to about PASSAGE_CHARS so short ones keep their context."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    out: list[str] = []
    current = ""
    for paragraph in paragraphs:
        if current and len(current) + len(paragraph) > PASSAGE_CHARS:
            out.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        out.append(current)
    return out


def _fts_query(query: str) -> str:
    """User text -> an FTS5 query that cannot be a syntax error: quoted terms, OR-ed."""
    words = [w.lower() for w in _WORD.findall(query)]
    unique = list(dict.fromkeys(w for w in words if len(w) > 1 or w.isdigit()))
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in unique[:64])


class CorpusIndex:
    """An FTS5 index over one corpus folder, rebuilt when the folder's files change."""

    _locks: ClassVar[dict[str, threading.Lock]] = {}
    _locks_guard = threading.Lock()

    def __init__(self, corpus: Path, cache_dir: Path | None = None):
        self.corpus = corpus.resolve()
        key = hashlib.sha256(str(self.corpus).encode()).hexdigest()[:16]
        # The engine passes its data folder's cache; a bare tool call uses the temp folder.
        folder = cache_dir or Path(tempfile.gettempdir()) / "planfile-cache"
        self.path = folder / f"search-{key}.sqlite"
        with self._locks_guard:
            self._lock = self._locks.setdefault(str(self.path), threading.Lock())

    def _files(self) -> list[Path]:
        if not self.corpus.is_dir():
            raise FileNotFoundError(f"search corpus {self.corpus} is not a folder")
        files = [
            p
            for p in sorted(self.corpus.rglob("*"))
            if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
        ]
        return files

    def _manifest(self, files: list[Path]) -> str:
        digest = hashlib.sha256()
        for path in files:
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(self.path, timeout=30)

    def ensure(self) -> None:
        """Build or refresh the index if the corpus changed since it was built."""
        with self._lock:
            try:
                self._ensure()
            except sqlite3.DatabaseError as err:
                if isinstance(err, sqlite3.OperationalError):
                    raise  # locked, or the disk: not the file's fault
                # The index is only a cache of the corpus: a broken file (not SQLite,
                # damaged) is removed and built again.
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                self._ensure()

    def _ensure(self) -> None:
        """`ensure`'s work; the caller holds the lock."""
        files = self._files()
        manifest = self._manifest(files)
        conn = self._connect()
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = conn.execute("SELECT value FROM meta WHERE key='manifest'").fetchone()
            if row and row[0] == manifest:
                return
            with conn:
                conn.execute("DROP TABLE IF EXISTS passages")
                conn.execute(
                    "CREATE VIRTUAL TABLE passages USING fts5("
                    "title, source UNINDEXED, text, tokenize='porter unicode61')"
                )
                for path in files:
                    if path.stat().st_size > MAX_FILE_BYTES:
                        continue
                    raw = path.read_text(encoding="utf-8", errors="replace")
                    text = _plain_text(path, raw)
                    title = _title(path, text)
                    source = str(path.relative_to(self.corpus))
                    conn.executemany(
                        "INSERT INTO passages (title, source, text) VALUES (?, ?, ?)",
                        [(title, source, passage) for passage in _passages(text)],
                    )
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('manifest', ?)",
                    (manifest,),
                )
        finally:
            conn.close()

    def search(self, query: str, k: int = 3) -> list[Hit]:
        self.ensure()
        match = _fts_query(query)
        if not match:
            return []
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT title, source, text, bm25(passages, 2.0, 0.0, 1.0) AS score "
                "FROM passages WHERE passages MATCH ? ORDER BY score LIMIT ?",
                (match, k),
            ).fetchall()
        finally:
            conn.close()
        return [Hit(title, source, text, -score) for title, source, text, score in rows]


def format_hits(hits: list[Hit]) -> str:
    """Hits as text for a prompt: each passage with its title and source."""
    return "\n\n".join(
        f"[{i}] {hit.title} ({hit.source})\n{hit.text}" for i, hit in enumerate(hits, 1)
    )

"""An on-disk FIFO of messages for one sink: what the line has not acknowledged yet.

SQLite (the standard library's) holds the queue: each message is a row with an increasing id,
appended in a transaction and deleted once the receiver acknowledged it. A process killed at
any point (SIGKILL, a crash) leaves every committed row in place, and the next start delivers
them first, in order. WAL journal with ``synchronous=NORMAL``: committed rows survive a
killed process; a power cut may lose the last commits (``durable=True`` syncs every commit,
at about a millisecond per batch on a disk).

The spool is bounded (``max_messages``): when full, the **oldest** messages are dropped and
counted (a line that was down for a long time wants the newest verdicts first delivered, and
a disk that fills stops everything else on the machine).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class Spool:
    """A bounded, persistent FIFO of text messages."""

    def __init__(self, path: str | Path, max_messages: int = 100_000, durable: bool = False):
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS messages "
            "(id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)"
        )
        self._count = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        self.recovered = self._count  # held from an earlier run
        self.dropped = 0

    def __len__(self) -> int:
        return self._count

    def put_many(self, bodies: list[str]) -> int:
        """Append in order; returns how many of the oldest were dropped to stay in bounds."""
        if not bodies:
            return 0
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany("INSERT INTO messages (body) VALUES (?)", [(b,) for b in bodies])
                over = self._count + len(bodies) - self.max_messages
                if over > 0:
                    db.execute(
                        "DELETE FROM messages WHERE id IN "
                        "(SELECT id FROM messages ORDER BY id LIMIT ?)",
                        (over,),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            over = max(over, 0)
            self._count += len(bodies) - over
            self.dropped += over
            return over

    def peek(self, limit: int) -> list[tuple[int, str]]:
        """The oldest ``limit`` messages (id, body), still held."""
        with self._lock:
            return list(
                self._db.execute("SELECT id, body FROM messages ORDER BY id LIMIT ?", (limit,))
            )

    def remove_through(self, last_id: int) -> None:
        """Forget every message up to and including ``last_id`` (acknowledged)."""
        with self._lock:
            cur = self._db.execute("DELETE FROM messages WHERE id <= ?", (last_id,))
            self._count = max(0, self._count - cur.rowcount)

    def close(self) -> None:
        with self._lock:
            self._db.close()

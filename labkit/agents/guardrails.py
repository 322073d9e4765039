"""The desk's rules, enforced by its tools, and the audit trail every tool call leaves.

    DeskRules().refund_refusal(order, customer)  -> None (allowed) or a Refusal naming the rule
    AuditLog(db).record(...)                     one row per tool call, allowed or refused
    python -m labkit.agents.guardrails runs/desk.sqlite --episode 3     print an audit trail

A language model proposes tool calls; it does not decide what the shop does. The rules live here,
in one small object: the tools ask it before they write anything, the goal text states the same
object's rules in words, and the judge reads the same limit. A refused call changes nothing and
answers "error: refused (RULE): why"; the audit table records it either way.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_REQUEST_CHARS = (
    2000  # a customer's message longer than this is refused before any model reads it
)
ORDER_ID_DIGITS = 9  # an order id is a plain number of at most this many digits


@dataclass(frozen=True)
class Refusal:
    """A tool call the rules forbid: which rule, and why in words."""

    rule: str  # one of DeskRules.RULES
    why: str

    def observation(self) -> str:
        return f"error: refused ({self.rule}): {self.why}"


@dataclass(frozen=True)
class DeskRules:
    """The support desk's policy: who may act on what, and the refund limit."""

    refund_limit: float = 200.0  # refunds above this amount (strictly) must be escalated
    refundable: tuple[str, ...] = ("damaged", "lost")  # order statuses that may be refunded
    cancellable: tuple[str, ...] = ("processing",)  # order statuses that may be cancelled

    RULES = {
        "own_orders_only": "a session acts only on the orders of the customer who writes",
        "look_up_first": "look an order up (or check it) before acting on it",
        "refund_status": "refund only orders whose status is damaged or lost",
        "refund_limit": "refunds above the limit are escalated, never made",
        "cancel_status": "cancel only orders still processing",
    }

    def text(self) -> str:
        """The rules in words, for the agent's goal."""
        return (
            "look up an order (lookup_order, or check_refund / check_cancel, which also say "
            "whether the rules allow that) before acting on it or answering about it; act only "
            "on the writing "
            f"customer's own orders; refund only orders whose status is {' or '.join(self.refundable)} "
            f"and whose price is at most ${self.refund_limit:.0f}, and escalate those above the limit; "
            f"cancel only orders still {' or '.join(self.cancellable)}; escalate repeat complaints "
            "at once; finish by replying to the customer or escalating."
        )

    def access_refusal(self, order: dict[str, Any], customer: int) -> Refusal | None:
        """Refuse any call on an order that is not the writing customer's."""
        if order["customer_id"] != customer:
            return Refusal(
                "own_orders_only",
                f"order {order['id']} is not an order of customer {customer}, who is writing",
            )
        return None

    def refund_refusal(
        self, order: dict[str, Any], customer: int, looked_up: bool
    ) -> Refusal | None:
        """None when refunding `order` is allowed now, else the first rule it breaks."""
        refusal = self.access_refusal(order, customer)
        if refusal is None and not looked_up:
            refusal = Refusal("look_up_first", f"look up order {order['id']} before refunding it")
        if refusal is None and order["status"] not in self.refundable:
            refusal = Refusal(
                "refund_status", f"order {order['id']} is {order['status']}, not damaged or lost"
            )
        if refusal is None and order["price"] > self.refund_limit:
            refusal = Refusal(
                "refund_limit",
                f"${order['price']:.2f} is above the ${self.refund_limit:.0f} limit: escalate",
            )
        return refusal

    def cancel_refusal(
        self, order: dict[str, Any], customer: int, looked_up: bool
    ) -> Refusal | None:
        """None when cancelling `order` is allowed now, else the first rule it breaks."""
        refusal = self.access_refusal(order, customer)
        if refusal is None and not looked_up:
            refusal = Refusal("look_up_first", f"look up order {order['id']} before cancelling it")
        if refusal is None and order["status"] not in self.cancellable:
            refusal = Refusal(
                "cancel_status", f"order {order['id']} is {order['status']}, no longer processing"
            )
        return refusal


def clean_request(text: str) -> str:
    """A person's message made safe to read: control characters become spaces, ends trimmed.

    Raises:
        ValueError: longer than MAX_REQUEST_CHARS (the message says the limit and the length).
    """
    if len(text) > MAX_REQUEST_CHARS:
        raise ValueError(
            f"the request is {len(text):,} characters; the desk reads at most "
            f"{MAX_REQUEST_CHARS:,}. Shorten it to the order number and what you want."
        )
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(cleaned.split())


# ---------------------------------------------------------------------------------------------
# The audit trail

_AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (id INTEGER PRIMARY KEY AUTOINCREMENT, env TEXT NOT NULL,
    seed INTEGER, customer INTEGER, request TEXT NOT NULL, started REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT,
    episode INTEGER NOT NULL REFERENCES episodes(id), customer INTEGER, tool TEXT NOT NULL,
    arguments TEXT NOT NULL, allowed INTEGER NOT NULL, rule TEXT NOT NULL, result TEXT NOT NULL,
    at REAL NOT NULL);
"""


class AuditLog:
    """Every tool call of every episode, in the `episodes` and `audit` tables of a SQLite database.

    The tables are created if absent and never dropped, so on a database file the record outlives
    the process and spans every episode played on it.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(_AUDIT_SCHEMA)
        self.episode: int | None = None
        self.customer: int | None = None

    def begin(self, env: str, seed: int | None, customer: int | None, request: str) -> int:
        """Open a new episode's record; returns its id."""
        cursor = self.db.execute(
            "INSERT INTO episodes (env, seed, customer, request, started) VALUES (?, ?, ?, ?, ?)",
            (env, seed, customer, request, time.time()),
        )
        self.db.commit()
        self.episode, self.customer = cursor.lastrowid, customer
        return self.episode

    def record(self, tool: str, arguments: str, result: str, rule: str = "") -> None:
        """One tool call: refused when `rule` names the rule that refused it."""
        self.db.execute(
            "INSERT INTO audit (episode, customer, tool, arguments, allowed, rule, result, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.episode,
                self.customer,
                tool,
                arguments,
                int(not rule),
                rule,
                result,
                time.time(),
            ),
        )
        self.db.commit()


def audit_trail(db: sqlite3.Connection | str | Path, episode: int | None = None) -> list[dict]:
    """The audit rows of one episode (None: the latest), oldest first.

    Raises:
        ValueError: the database has no audit table, or no such episode (the message lists them).
    """
    own = not isinstance(db, sqlite3.Connection)
    if own:
        if not Path(db).is_file():
            raise ValueError(f"{db} does not exist; pass the desk's database file (db_path=...).")
        db = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "audit" not in tables:
            raise ValueError("this database has no audit table: it is not a desk's database.")
        episodes = [r[0] for r in db.execute("SELECT id FROM episodes ORDER BY id")]
        if episode is None and episodes:
            episode = episodes[-1]
        if episode not in episodes:
            shown = f"{episodes[0]}..{episodes[-1]}" if episodes else "none yet"
            raise ValueError(f"no episode {episode} in the audit trail (episodes: {shown}).")
        cursor = db.execute(
            "SELECT a.episode, e.env, e.seed, a.customer, a.tool, a.arguments, a.allowed, a.rule, "
            "a.result, a.at FROM audit a JOIN episodes e ON e.id = a.episode "
            "WHERE a.episode = ? ORDER BY a.id",
            (episode,),
        )
        keys = [c[0] for c in cursor.description]
        return [dict(zip(keys, row, strict=True)) for row in cursor]
    finally:
        if own:
            db.close()


def format_audit(rows: list[dict]) -> str:
    """An audit trail as a table: time, tool call, allowed or refused (rule), result."""
    lines = []
    for r in rows:
        stamp = time.strftime("%H:%M:%S", time.localtime(r["at"]))
        verdict = "allowed" if r["allowed"] else f"REFUSED ({r['rule']})"
        call = f"{r['tool']} {r['arguments']}".strip()
        lines.append(f"{stamp}  {call:<24} {verdict:<28} {r['result']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labkit.agents.guardrails", description="Print an episode's audit trail."
    )
    parser.add_argument("db", help="the desk's SQLite file (CustomerServiceEnv(db_path=...))")
    parser.add_argument("--episode", type=int, help="episode id (default: the latest)")
    args = parser.parse_args(argv)
    try:
        rows = audit_trail(args.db, args.episode)
    except (ValueError, sqlite3.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if rows:
        first = rows[0]
        print(f"episode {first['episode']} ({first['env']}, seed {first['seed']})")
    print(format_audit(rows) or "no tool calls recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())

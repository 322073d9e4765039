"""Tool-use tasks: a customer-service desk on a real SQLite database, and a calendar assistant.

Each episode a simulated user writes one request, generated from templates by the seed. The agent
answers with tool calls written as text ("lookup_order 1042", "list_events monday"); the tool's
output is the next observation. The episode ends when the agent replies to the user (or escalates),
and at once when it makes a change the request did not call for (a wrong refund, a wrong booking):
that is a loss. Success is judged on the final state (the database rows, the calendar), so a lucky
guess without the required look-up does not count where the rules demand one.

Tool syntax: the first word names the tool, the rest are its arguments separated by spaces. A line
that is not a valid call gets an "error: ..." observation and changes nothing. `info` carries the
INFO_KEYS, a short admissible list computed from the state (~10-15 calls), the scripted expert's next
call, and at the end "verdict" (why the episode was won or lost).
"""

from __future__ import annotations

import random
import re
import sqlite3
from dataclasses import dataclass, replace
from typing import Any

from labkit.agents.core import EnvError

Outcome = tuple[str, str] | None  # ("won" | "lost", why) when the action ended the episode


class _ToolEnv:
    """What both tool-use tasks share: seeding, step counting, truncation, the info dict.

    Subclasses set `name` and `tools` (tool -> usage) and define `_new_task(rng) -> request`,
    `_admissible()`, `_expert()` and one method `_<tool>(args) -> (observation, Outcome)` per tool.
    """

    name = ""
    tools: dict[str, str] = {}

    def __init__(self, max_steps: int = 10) -> None:
        """Raises:
        ValueError: max_steps < 1.
        """
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}.")
        self.max_steps = max_steps
        self.seed: int | None = None
        self.goal = ""
        self._steps = 0
        self._done = True
        self._won = self._lost = False
        self._verdict = ""

    def reset(self, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        """Start a new task (seed None: the next seed after the last one, 0 at first).

        Returns:
            (the user's request, info).
        """
        if seed is None:
            seed = 0 if self.seed is None else self.seed + 1
        self.seed = seed
        self._steps, self._done, self._won, self._lost, self._verdict = 0, False, False, False, ""
        request = self._new_task(random.Random(seed))
        return request, self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Run one tool call.

        Returns:
            (tool output, 1.0 on success else 0.0, episode ended, max_steps reached, info).
        Raises:
            EnvError: no episode is running (call reset first, and again after the end).
        """
        if self._done:
            raise EnvError("no episode is running: call reset() before step(), and after the end.")
        self._steps += 1
        tool, *args = action.split() or [""]
        if tool in self.tools:
            observation, outcome = getattr(self, "_" + tool)(args)
        else:
            usage = "; ".join(self.tools.values())
            observation, outcome = f"error: unknown tool {tool!r}. Tools: {usage}", None
        if outcome is not None:
            self._won, self._lost = outcome[0] == "won", outcome[0] == "lost"
            self._verdict = outcome[1]
        terminated = outcome is not None
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        reward = 1.0 if self._won else 0.0
        return observation, reward, terminated, truncated, self._info()

    def _usage(self, tool: str) -> str:
        return f"error: usage: {self.tools[tool]}"

    def _info(self) -> dict[str, Any]:
        return {
            "goal": self.goal,
            "admissible_actions": [] if self._done else self._admissible(),
            "expert_action": None if self._done else self._expert(),
            "score": 1.0 if self._won else 0.0,
            "max_score": 1.0,
            "won": self._won,
            "lost": self._lost,
            "verdict": self._verdict,
            "seed": self.seed,
        }

    def close(self) -> None:
        """Nothing to release: each episode's state lives in memory."""


# ---------------------------------------------------------------------------------------------
# Customer service

REFUND_LIMIT = 200.0  # refunds above this amount must be escalated to a supervisor
REPLIES = (
    "processing",
    "shipped",
    "delivered",
    "refunded",
    "cancelled",
    "not_eligible",
    "cannot_cancel",
)
# case -> the target order's possible statuses; the case decides what a correct resolution is.
CASES = {
    "where_is": ("processing", "shipped", "delivered"),
    "refund": ("damaged", "lost"),
    "refund_over_limit": ("damaged", "lost"),
    "refund_not_eligible": ("delivered",),
    "cancel": ("processing",),
    "cancel_too_late": ("shipped", "delivered"),
    "repeat_complaint": ("processing", "shipped", "delivered", "damaged", "lost"),
}
_REQUESTS = {
    "where_is": (
        "Where is my order {o}?",
        "Hi, any news about order {o}? I ordered the {item} a while ago.",
        "Can you tell me the status of my order {o}, please?",
    ),
    "damaged": (
        "My order {o} arrived broken, I want my money back.",
        "The {item} from order {o} came damaged. Refund please.",
    ),
    "lost": (
        "Order {o} never arrived. Please refund me.",
        "I am still waiting for the {item} (order {o}); I think it got lost. I want a refund.",
    ),
    "cancel": (
        "Please cancel order {o}.",
        "I changed my mind about the {item}, cancel order {o} please.",
    ),
    "repeat_complaint": (
        "This is the third time I write about order {o}!! Nobody answers. I want a manager.",
        "Still nothing about order {o}?! I have complained twice already. Escalate this now.",
    ),
}
# What a typed request asks for, by the first group whose words it contains (in this order).
_KEYWORDS = {
    "repeat_complaint": ("manager", "supervisor", "escalate", "third time", "twice"),
    "refund": ("refund", "money back", "broken", "damaged", "lost", "never arrived"),
    "cancel": ("cancel",),
    "where_is": ("where", "status", "news", "track", "when", "check"),
}
_FIRST = ("Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas")
_LAST = ("Silva", "Meyer", "Dubois", "Okafor", "Rossi", "Kim", "Novak", "Haddad")
_ITEMS = ("kettle", "desk lamp", "headphones", "office chair", "coffee grinder", "backpack")
_SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
    item TEXT NOT NULL, price REAL NOT NULL, status TEXT NOT NULL,
    ordered_on TEXT NOT NULL, updated_on TEXT NOT NULL);
CREATE TABLE refunds (id INTEGER PRIMARY KEY AUTOINCREMENT, order_id INTEGER NOT NULL, amount REAL);
CREATE TABLE tickets (id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id INTEGER, order_id INTEGER);
"""


def _make_shop(rng: random.Random) -> sqlite3.Connection:
    """A fresh in-memory shop database: six customers with two or three orders each."""
    db = sqlite3.connect(":memory:")
    db.executescript(_SCHEMA)
    order_id = rng.randrange(1000, 9000)
    for cid in range(1, 7):
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        email = name.lower().replace(" ", ".") + "@example.com"
        db.execute("INSERT INTO customers VALUES (?, ?, ?)", (cid, name, email))
        for _ in range(rng.randint(2, 3)):
            order_id += rng.randint(1, 40)
            item, price = rng.choice(_ITEMS), round(rng.uniform(8, 480), 2)
            status = rng.choice(("processing", "shipped", "delivered"))
            day = rng.randint(1, 20)
            ordered, updated = f"2024-03-{day:02d}", f"2024-03-{day + rng.randint(0, 8):02d}"
            row = (order_id, cid, item, price, status, ordered, updated)
            db.execute("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)", row)
    return db


class CustomerServiceEnv(_ToolEnv):
    """An online shop's support desk: orders in SQLite, one customer request per episode.

    Business rules (also stated in the goal): look an order up before acting on it or answering
    about it; refund only orders whose status is damaged or lost and whose price is at most
    REFUND_LIMIT, escalate those above; cancel only orders still processing; escalate repeat
    complaints at once. A reply ("reply <status>|refunded|cancelled|not_eligible|cannot_cancel")
    or an escalation ends the episode; a refund or cancellation the rules forbid ends it as lost.
    The database (an in-memory SQLite file, `self.db`) is inspected to judge the end state.
    """

    name = "customer_service"
    tools = {
        "lookup_order": "lookup_order ORDER_ID",
        "refund": "refund ORDER_ID",
        "cancel": "cancel ORDER_ID",
        "escalate": "escalate",
        "reply": "reply " + "|".join(REPLIES),
    }

    def __init__(self, max_steps: int = 10, refund_limit: float = REFUND_LIMIT) -> None:
        super().__init__(max_steps)
        self.refund_limit = refund_limit
        self.db: sqlite3.Connection | None = None
        self.case = ""  # which kind of request this episode is (for analysis; not in info)
        self.customer = 0  # the writing customer's id
        self.target = 0  # the order the request is about
        self._orders: list[int] = []  # the customer's order ids
        self._looked_up: set[int] = set()

    def _new_task(self, rng: random.Random) -> str:
        self.close()
        self.db = _make_shop(rng)
        self.case = rng.choice(list(CASES))
        self.customer = rng.randint(1, 6)
        rows = self.db.execute("SELECT id FROM orders WHERE customer_id = ?", (self.customer,))
        self._orders = sorted(r[0] for r in rows)
        self.target = rng.choice(self._orders)
        status = rng.choice(CASES[self.case])
        if self.case == "refund":
            price = round(rng.uniform(8, self.refund_limit), 2)
        elif self.case == "refund_over_limit":
            price = round(rng.uniform(self.refund_limit + 1, 2.5 * self.refund_limit), 2)
        else:
            price = self._order(self.target)["price"]
        self.db.execute(
            "UPDATE orders SET status = ?, price = ? WHERE id = ?", (status, price, self.target)
        )
        self.db.commit()
        self._looked_up = set()
        order = self._order(self.target)
        if self.case.startswith("refund"):
            kind = status if status in ("damaged", "lost") else rng.choice(("damaged", "lost"))
        else:
            kind = self.case.removesuffix("_too_late")
        request = rng.choice(_REQUESTS[kind]).format(o=self.target, item=order["item"])
        return self._pose(request)

    def _pose(self, request: str) -> str:
        """Set the goal for `request` (about self.target) and return the customer's message."""
        self.goal = (
            f'You are a customer-service agent. Resolve this request: "{request}" Rules: look up '
            "an order before acting on it or answering about it; refund only orders whose status "
            f"is damaged or lost and whose price is at most ${self.refund_limit:.0f}, and escalate "
            "those above the limit; cancel only orders still processing; escalate repeat "
            "complaints at once; finish by replying to the customer or escalating."
        )
        name = self._order(self.target)["customer"]
        return f'{name} (customer {self.customer}) writes: "{request}"'

    def reset(
        self, seed: int | None = None, request: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode: the shop and customer of `seed`, and their request.

        Args:
            request: a person's own words in place of the generated request. They must name one
                of the customer's orders and ask where it is, for a refund, for a cancellation or
                for a manager; that and the order's state in the database decide what a correct
                resolution is, by the same rules as a generated request.
        Returns:
            (the customer's message, info).
        Raises:
            ValueError: the words name none (or several) of the customer's orders, or ask for
                nothing the desk does; the message says what to write.
        """
        observation, info = super().reset(seed)
        if request is None:
            return observation, info
        self.target, self.case = self._read_request(request)
        return self._pose(request.strip()), self._info()

    def _read_request(self, request: str) -> tuple[int, str]:
        """(the order, the case) that a typed request is about, judged on the database."""
        named = {int(n) for n in re.findall(r"\d+", request)} & set(self._orders)
        orders = ", ".join(map(str, self._orders))
        if len(named) != 1:
            raise ValueError(
                f"the request must name exactly one of the customer's orders ({orders}), e.g. "
                f"'Where is my order {self._orders[0]}?'; it names {len(named)}."
            )
        target = named.pop()
        text = request.lower()
        kind = next((k for k, words in _KEYWORDS.items() if any(w in text for w in words)), "")
        if not kind:
            raise ValueError(
                "the desk cannot tell what the request asks for: say where the order is, a refund "
                "(broken, damaged, lost), a cancellation, or a manager."
            )
        order = self._order(target)
        status, price = order["status"], order["price"]
        if kind == "refund":
            if status not in ("damaged", "lost"):
                return target, "refund_not_eligible"
            return target, "refund" if price <= self.refund_limit else "refund_over_limit"
        if kind == "cancel":
            return target, "cancel" if status == "processing" else "cancel_too_late"
        if kind == "where_is" and status not in REPLIES:
            raise ValueError(
                f"order {target} is {status}, which the desk has no status reply for; ask for a "
                "refund instead."
            )
        return target, kind  # "where_is" or "repeat_complaint"

    def _order(self, order_id: int) -> dict[str, Any] | None:
        """One order joined with its customer's name, or None."""
        row = self.db.execute(
            "SELECT o.id, o.item, o.price, o.status, c.name, c.id, o.ordered_on, o.updated_on "
            "FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = ?",
            (order_id,),
        ).fetchone()
        if row is None:
            return None
        keys = ("id", "item", "price", "status", "customer", "customer_id", "ordered", "updated")
        return dict(zip(keys, row, strict=True))

    def _order_arg(self, tool: str, args: list[str]) -> tuple[dict[str, Any] | None, str]:
        """Parse ORDER_ID and fetch the order: (order, "") or (None, error message)."""
        if len(args) != 1 or not args[0].isdigit():
            return None, self._usage(tool)
        order = self._order(int(args[0]))
        return order, "" if order else f"error: no order {args[0]}"

    def _final_action(self) -> str:
        """The call that correctly ends this episode."""
        if self.case in ("refund_over_limit", "repeat_complaint"):
            return "escalate"
        answer = {
            "where_is": None,
            "refund": "refunded",
            "refund_not_eligible": "not_eligible",
            "cancel": "cancelled",
            "cancel_too_late": "cannot_cancel",
        }[self.case]
        return f"reply {answer or self._order(self.target)['status']}"

    def _expected_state(self) -> tuple[list, str, int]:
        """(refund rows, target's status, tickets) after a correct resolution."""
        order = self._order(self.target)
        refunds = [(self.target, order["price"])] if self.case == "refund" else []
        status = {"refund": "refunded", "cancel": "cancelled"}.get(self.case, order["status"])
        tickets = int(self._final_action() == "escalate")
        return refunds, status, tickets

    def _state(self) -> tuple[list, str, int]:
        refunds = self.db.execute("SELECT order_id, amount FROM refunds ORDER BY id").fetchall()
        status = self._order(self.target)["status"]
        tickets = self.db.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
        return [tuple(r) for r in refunds], status, tickets

    def _admissible(self) -> list[str]:
        calls = [f"lookup_order {o}" for o in self._orders]
        calls += [f"refund {self.target}", f"cancel {self.target}", "escalate"]
        return calls + [f"reply {r}" for r in REPLIES]

    def _expert(self) -> str:
        if self.case == "repeat_complaint":
            return "escalate"
        if self.target not in self._looked_up:
            return f"lookup_order {self.target}"
        status = self._order(self.target)["status"]
        if self.case == "refund" and status != "refunded":
            return f"refund {self.target}"
        if self.case == "cancel" and status == "processing":
            return f"cancel {self.target}"
        return self._final_action()

    def _lookup_order(self, args: list[str]) -> tuple[str, Outcome]:
        order, error = self._order_arg("lookup_order", args)
        if order is None:
            return error, None
        self._looked_up.add(order["id"])
        fields = " ".join(f"{k}={v}" for k, v in order.items() if k != "id")
        return f"order {order['id']}: {fields}", None

    def _refund(self, args: list[str]) -> tuple[str, Outcome]:
        order, error = self._order_arg("refund", args)
        if order is None:
            return error, None
        if order["status"] == "refunded":
            return f"error: order {order['id']} is already refunded", None
        cursor = self.db.execute(
            "INSERT INTO refunds (order_id, amount) VALUES (?, ?)", (order["id"], order["price"])
        )
        self.db.execute("UPDATE orders SET status = 'refunded' WHERE id = ?", (order["id"],))
        self.db.commit()
        observation = (
            f"refund {cursor.lastrowid} recorded: order {order['id']}, ${order['price']:.2f}"
        )
        if order["id"] not in self._looked_up:
            return observation, ("lost", f"refunded order {order['id']} without looking it up")
        if order["status"] not in ("damaged", "lost"):
            return observation, (
                "lost",
                f"refunded order {order['id']} with status {order['status']}",
            )
        if order["price"] > self.refund_limit:
            why = f"refunded ${order['price']:.2f} > ${self.refund_limit:.0f}: it needed escalation"
            return observation, ("lost", why)
        if self.case != "refund" or order["id"] != self.target:
            return observation, ("lost", f"refunded order {order['id']}, which nobody asked for")
        return observation, None

    def _cancel(self, args: list[str]) -> tuple[str, Outcome]:
        order, error = self._order_arg("cancel", args)
        if order is None:
            return error, None
        if order["status"] != "processing":
            return f"error: order {order['id']} is {order['status']} and cannot be cancelled", None
        self.db.execute("UPDATE orders SET status = 'cancelled' WHERE id = ?", (order["id"],))
        self.db.commit()
        observation = f"order {order['id']} cancelled"
        if order["id"] not in self._looked_up:
            return observation, ("lost", f"cancelled order {order['id']} without looking it up")
        if self.case != "cancel" or order["id"] != self.target:
            return observation, ("lost", f"cancelled order {order['id']}, which nobody asked for")
        return observation, None

    def _escalate(self, args: list[str]) -> tuple[str, Outcome]:
        if args:
            return self._usage("escalate"), None
        cursor = self.db.execute(
            "INSERT INTO tickets (customer_id, order_id) VALUES (?, ?)",
            (self.customer, self.target),
        )
        self.db.commit()
        return f"ticket {cursor.lastrowid} opened for a supervisor", self._judge("escalate")

    def _reply(self, args: list[str]) -> tuple[str, Outcome]:
        if len(args) != 1 or args[0] not in REPLIES:
            return self._usage("reply"), None
        return f"reply sent: {args[0]}", self._judge(f"reply {args[0]}")

    def _judge(self, final: str) -> Outcome:
        """The episode's verdict once it ends with `final`, from the database's state."""
        expected = self._final_action()
        if final != expected:
            return "lost", f"ended with {final!r}; the rules required {expected!r}"
        if self.case != "repeat_complaint" and self.target not in self._looked_up:
            return "lost", f"ended with {final!r} without looking up order {self.target}"
        if self._state() != self._expected_state():
            return "lost", f"database state {self._state()} != expected {self._expected_state()}"
        return "won", f"resolved correctly with {final!r}"

    def close(self) -> None:
        """Close the episode's database."""
        if self.db is not None:
            self.db.close()
            self.db = None


# ---------------------------------------------------------------------------------------------
# Calendar

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")
OPEN, CLOSE, SLOT = 9 * 60, 17 * 60, 30  # working hours (minutes after midnight), slot length
WINDOWS = {"morning": (9 * 60, 12 * 60), "afternoon": (13 * 60, 17 * 60)}
PEOPLE = ("ana", "ben", "chloe", "david", "emma", "farid")
_TITLES = ("standup", "design review", "1:1", "planning", "lunch", "interview", "demo")
MAX_MOVE_OPTIONS = 8  # admissible move targets: the first 8 slot starts after the event
_CALENDAR_REQUESTS = {
    "find_slot": (
        "Find me a free 30-minute slot on {when}.",
        "When am I free for half an hour on {when}?",
    ),
    "schedule": (
        "Schedule a {minutes}-minute meeting with {person} on {when}, as early as possible.",
        "Book {minutes} minutes with {person} on {when}, the earliest time that works.",
    ),
    "move": (
        "Move my {old} on {day} to the next free slot.",
        "Something came up: push my {old} {title} on {day} to the next free time.",
    ),
}


@dataclass(frozen=True, order=True)
class Event:
    """One meeting. Calendars are sets of events, so two states compare with ==."""

    day: str  # one of DAYS
    start: int  # minutes after midnight
    minutes: int  # duration
    title: str  # e.g. "standup" or "meeting with ana"

    def overlaps(self, other: Event) -> bool:
        return (
            self.day == other.day
            and self.start < other.start + other.minutes
            and other.start < self.start + self.minutes
        )

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.start + self.minutes)} {self.title}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(text: str) -> int | None:
    """'09:30' -> 570, or None when it is not a time on the slot grid within working hours."""
    hours, _, mins = text.partition(":")
    if not (hours.isdigit() and mins.isdigit()):
        return None
    value = int(hours) * 60 + int(mins)
    return value if OPEN <= value < CLOSE and value % SLOT == 0 else None


class CalendarEnv(_ToolEnv):
    """A personal assistant's week (Monday-Friday, 09:00-17:00, 30-minute grid), one request each.

    Requests: find the earliest free 30-minute slot in a morning or afternoon ("reply tuesday
    13:30"); schedule a meeting with someone at the earliest free time in a morning or afternoon
    ("schedule wednesday 10:00 30 ana", then "reply done"); move an event to the earliest time after
    its end where it fits ("move monday 10:00 11:30", then "reply done"). Tools refuse
    double-bookings with an error; a booking or move that leaves the calendar different from the
    correct final calendar ends the episode as lost. Success: the right reply and the right calendar.
    """

    name = "calendar"
    tools = {
        "list_events": "list_events DAY",
        "schedule": "schedule DAY HH:MM MINUTES PERSON",
        "move": "move DAY HH:MM NEW_HH:MM",
        "reply": "reply DAY HH:MM (a slot) | reply done (after a change)",
    }

    def __init__(self, max_steps: int = 10) -> None:
        super().__init__(max_steps)
        self.case = ""  # "find_slot" | "schedule" | "move" (for analysis; not in info)
        self.day = ""  # the day the request is about
        self.events: set[Event] = set()
        self.expected: set[Event] = set()  # the calendar after a correct resolution
        self.answer = ""  # the correct final reply
        self._options: list[str] = []  # the request's admissible schedule/move/reply calls
        self._listed: set[str] = set()

    def _new_task(self, rng: random.Random) -> str:
        while True:  # draw until the request has an answer; deterministic given the seed
            self.events = _random_week(rng)
            request = self._draw_request(rng)
            if request:
                break
        self._listed = set()
        self.goal = (
            "You are a personal assistant managing a calendar (working hours 09:00-17:00 on a "
            "30-minute grid; morning is 09:00-12:00, afternoon 13:00-17:00). Resolve this "
            f'request: "{request}" Rules: a free time means the earliest one that fits; never '
            'double-book; finish with a reply: "reply DAY HH:MM" for a slot, "reply done" after '
            "a change."
        )
        return f'User: "{request}"'

    def _free(self, event: Event, ignore: Event | None = None) -> bool:
        return event.start + event.minutes <= CLOSE and not any(
            e.overlaps(event) for e in self.events if e != ignore
        )

    def _draw_request(self, rng: random.Random) -> str:
        """Choose a request for the current week; '' when it has no answer (draw again)."""
        self.case = rng.choice(list(_CALENDAR_REQUESTS))
        self.day = rng.choice(DAYS)
        part = rng.choice(list(WINDOWS))
        minutes = 30 if self.case == "find_slot" else rng.choice((30, 60))
        person = rng.choice(PEOPLE)
        if self.case == "move":
            day_events = sorted(e for e in self.events if e.day == self.day)
            if not day_events:
                return ""
            event = rng.choice(day_events)
            end = event.start + event.minutes
            starts = list(range(end, CLOSE - event.minutes + 1, SLOT))[:MAX_MOVE_OPTIONS]
            moved = [replace(event, start=s) for s in starts]
        else:
            low, high = WINDOWS[part]
            starts = list(range(low, high - minutes + 1, SLOT))
            event = None
            moved = [Event(self.day, s, minutes, f"meeting with {person}") for s in starts]
        fits = [m for m in moved if self._free(m, ignore=event)]
        if not fits:
            return ""
        if self.case == "find_slot":
            self.expected = set(self.events)
            self.answer = f"{self.day} {_hhmm(fits[0].start)}"
            self._options = [f"reply {self.day} {_hhmm(s)}" for s in starts]
        elif self.case == "schedule":
            self.expected = self.events | {fits[0]}
            self.answer = "done"
            calls = [f"schedule {self.day} {_hhmm(s)} {minutes} {person}" for s in starts]
            self._options = calls + ["reply done"]
        else:
            self.expected = (self.events - {event}) | {fits[0]}
            self.answer = "done"
            calls = [f"move {self.day} {_hhmm(event.start)} {_hhmm(s)}" for s in starts]
            self._options = calls + ["reply done"]
        template = rng.choice(_CALENDAR_REQUESTS[self.case])
        return template.format(
            when=f"{self.day.capitalize()} {part}",
            day=self.day.capitalize(),
            minutes=minutes,
            person=person.capitalize(),
            old=_hhmm(event.start) if event else "",
            title=event.title if event else "",
        )

    def _admissible(self) -> list[str]:
        return [f"list_events {d}" for d in DAYS] + self._options

    def _expert(self) -> str:
        if self.day not in self._listed:
            return f"list_events {self.day}"
        if self.events != self.expected:
            return next(o for o in self._options if self._would_solve(o))
        return f"reply {self.answer}"

    def _would_solve(self, call: str) -> bool:
        """Whether this schedule/move call turns the calendar into the expected one."""
        tool, *args = call.split()
        change = self._change(tool, args)
        return isinstance(change, tuple) and _changed(self.events, *change) == self.expected

    def _change(self, tool: str, args: list[str]) -> tuple[Event | None, Event] | str:
        """The (removed event or None, added event) that a schedule/move would make, or an error."""
        if tool == "schedule":
            if len(args) != 4 or args[0] not in DAYS or not args[2].isdigit():
                return self._usage("schedule")
            start, minutes = _minutes(args[1]), int(args[2])
            if start is None or minutes <= 0 or minutes % SLOT:
                return f"error: times are HH:MM on the half hour 09:00-16:30; minutes a multiple of {SLOT}"
            new, old = Event(args[0], start, minutes, f"meeting with {args[3].lower()}"), None
        else:
            if len(args) != 3 or args[0] not in DAYS:
                return self._usage("move")
            start, to = _minutes(args[1]), _minutes(args[2])
            old = next((e for e in self.events if e.day == args[0] and e.start == start), None)
            if old is None or to is None:
                return f"error: no event starts at {args[1]} on {args[0]}, or {args[2]} is not a valid time"
            new = replace(old, start=to)
        if not self._free(new, ignore=old):
            clash = [str(e) for e in self.events if e != old and e.overlaps(new)]
            return f"error: {new} does not fit: " + ("; ".join(clash) or "past 17:00")
        return old, new

    def _apply(self, tool: str, args: list[str]) -> tuple[str, Outcome]:
        change = self._change(tool, args)
        if isinstance(change, str):
            return change, None
        old, new = change
        self.events = _changed(self.events, old, new)
        verb = "scheduled" if old is None else f"moved {_hhmm(old.start)} to"
        observation = f"{verb} {new.day} {new}"
        if self.events != self.expected:
            return observation, ("lost", f"{observation}: not what the request asked for")
        return observation, None

    def _schedule(self, args: list[str]) -> tuple[str, Outcome]:
        return self._apply("schedule", args)

    def _move(self, args: list[str]) -> tuple[str, Outcome]:
        return self._apply("move", args)

    def _list_events(self, args: list[str]) -> tuple[str, Outcome]:
        if len(args) != 1 or args[0] not in DAYS:
            return self._usage("list_events") + f" (DAY one of {', '.join(DAYS)})", None
        self._listed.add(args[0])
        day = sorted(e for e in self.events if e.day == args[0])
        return f"{args[0]}: " + ("; ".join(str(e) for e in day) or "no events"), None

    def _reply(self, args: list[str]) -> tuple[str, Outcome]:
        text = " ".join(args)
        if not text:
            return self._usage("reply"), None
        observation = f"reply sent: {text}"
        if text != self.answer:
            return observation, ("lost", f"replied {text!r}; the answer was {self.answer!r}")
        if self.events != self.expected:
            return observation, ("lost", "replied before making the requested change")
        return observation, ("won", f"replied {text!r} with the calendar as requested")


def _changed(events: set[Event], old: Event | None, new: Event) -> set[Event]:
    """The calendar with `old` (if any) replaced by `new`."""
    return (events - {old}) | {new}


def _random_week(rng: random.Random) -> set[Event]:
    """A plausible busy week: each slot starts a 30- or 60-minute event with probability 0.35."""
    events = set()
    for day in DAYS:
        t = OPEN
        while t < CLOSE:
            minutes = rng.choice((30, 60))
            if rng.random() < 0.35 and t + minutes <= CLOSE:
                title = rng.choice(_TITLES)
                if title == "1:1":
                    title = f"1:1 with {rng.choice(PEOPLE)}"
                events.add(Event(day, t, minutes, title))
                t += minutes
            else:
                t += SLOT
    return events

"""The personal assistant: a week's calendar (Monday-Friday, 09:00-17:00, 30-minute grid).

Requests: find the earliest free slot of 30 or 60 minutes in a morning or afternoon ("reply
tuesday 13:30"); schedule a meeting with someone at the earliest free time in a morning or
afternoon ("schedule wednesday 10:00 60 ana", then "reply done"); move an event to the earliest
time it fits in the other half of its day ("move monday 10:00 14:30", then "reply done").

Tools answer as a calendar API does: `list_events DAY` lists a day's events with their lengths,
`free_slots DAY MINUTES WINDOW` is the free/busy query (the start times where that many minutes are
free, earliest first), and `move_options DAY HH:MM WINDOW` the same for an existing event (where the
event at HH:MM would fit). Each answer restates its query, as an API's response does. The tools refuse what the rules forbid before changing anything: a double
booking, a time off the working hours or the half-hour grid; a forbidden call also ends the
episode as lost. Success: the right reply, the right calendar, and the day looked at first.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from labkit.agents.tooluse import ToolEnv, ToolResult, as_typed, split_wordings

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")
OPEN, CLOSE, SLOT = 9 * 60, 17 * 60, 30  # working hours (minutes after midnight), slot length
WINDOWS = {"morning": (9 * 60, 12 * 60), "afternoon": (13 * 60, 17 * 60)}
LENGTHS = (30, 60)  # meeting lengths in minutes
PEOPLE = ("ana", "ben", "chloe", "david", "emma", "farid")
TITLES = ("standup", "design review", "1:1", "planning", "lunch", "interview", "demo")
RULES = {
    "no_double_booking": "never book over another event",
    "working_hours": "times are on the half-hour grid between 09:00 and 17:00",
}
# {day} "Tuesday", {window} "morning", {length} "30-minute" / "one-hour", {span} "30 minutes" /
# "an hour", {person} "Ana", {old} "10:00", {title} "standup". The first two thirds of each tuple
# are the training wordings, the rest held out (tooluse.split_wordings).
TEMPLATES = {
    "find_slot": (
        "Find me a free {length} slot on {day} {window}.",
        "When am I free for {span} on {day} {window}?",
        "Do I have {span} free on {day} {window}? Give me the earliest time.",
        "Earliest free {length} slot {day} {window}, please.",
        "I need {span} on {day} {window}. When is the first free time?",
        "Look for a {length} gap in my calendar on {day} {window}.",
        "Check {day} {window} for me: the first time I have {span} free.",
        "what is my earliest open {length} window on {day} {window}",
        "Any {length} opening on {day} {window}? The first one.",
    ),
    "schedule": (
        "Schedule a {length} meeting with {person} on {day} {window}, as early as possible.",
        "Book {span} with {person} on {day} {window}, the earliest time that works.",
        "Set up a {length} call with {person} {day} {window}, first free time.",
        "Put {span} with {person} in my calendar on {day} {window}, as early as you can.",
        "Please book a {length} meeting with {person} on {day} {window}.",
        "I need {span} with {person} on {day} {window}; take the earliest free time.",
        "Grab the first free {length} slot on {day} {window} for a chat with {person}.",
        "could you add a {length} sync with {person} on {day} {window}, earliest possible",
        "Arrange {span} with {person} on {day} {window} at the first opening.",
    ),
    "move": (
        "Move my {old} {title} on {day} to the {window}.",
        "Something came up: push my {old} {title} on {day} to the {window}.",
        "Please reschedule the {old} {title} on {day} to the {window}, earliest free time.",
        "Can you shift my {title} at {old} on {day} to the {window}?",
        "Move the {old} meeting on {day} to the {window}, first time it fits.",
        "I can't make the {old} {title} on {day}; move it to the {window}.",
        "Bump my {old} {title} on {day} into the {window}, as early as it fits.",
        "pls move {day} {old} ({title}) to the {window}",
        "Could the {title} at {old} on {day} go to the {window} instead?",
    ),
}
PROTECTED = frozenset(DAYS + PEOPLE + tuple(WINDOWS) + ("hour", "half", "minutes", "minute"))


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
        return f"{hhmm(self.start)}-{hhmm(self.start + self.minutes)} {self.title}"


def hhmm(minutes: int) -> str:
    """570 -> '09:30'."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_time(text: str) -> int | None:
    """'09:30' -> 570, or None when it is not a time on the slot grid within working hours."""
    hours, _, mins = text.partition(":")
    if not (hours.isascii() and hours.isdigit() and mins.isascii() and mins.isdigit()):
        return None
    if len(hours) > 2 or len(mins) != 2:
        return None
    value = int(hours) * 60 + int(mins)
    return value if OPEN <= value < CLOSE and value % SLOT == 0 else None


def _length_words(minutes: int, rng: random.Random) -> tuple[str, str]:
    """({length}, {span}) for a template: ('30-minute', 'half an hour') and the like."""
    if minutes == 30:
        return rng.choice(("30-minute", "half-hour")), rng.choice(("30 minutes", "half an hour"))
    return rng.choice(("60-minute", "one-hour")), rng.choice(("60 minutes", "an hour"))


class CalendarEnv(ToolEnv):
    """A personal assistant's week, one request each episode (module docstring)."""

    name = "calendar"
    tools = {
        "list_events": "list_events DAY",
        "free_slots": "free_slots DAY MINUTES morning|afternoon",
        "move_options": "move_options DAY HH:MM morning|afternoon",
        "schedule": "schedule DAY HH:MM MINUTES PERSON",
        "move": "move DAY HH:MM NEW_HH:MM",
        "reply": "reply DAY HH:MM (a slot) | reply done (after a change)",
    }

    def __init__(
        self,
        max_steps: int = 10,
        wordings: str = "train",
        typed: float = 0.5,
        db_path: str | None = None,
    ) -> None:
        super().__init__(max_steps, wordings, typed, db_path)
        self.case = ""  # "find_slot" | "schedule" | "move" (for analysis; not in info)
        self.day = ""  # the day the request is about
        self.events: set[Event] = set()
        self.expected: set[Event] = set()  # the calendar after a correct resolution
        self.answer = ""  # the correct final reply
        self._query = ""  # the free_slots call that answers the request
        self._moved: Event | None = None  # the event a move request is about
        self._options: list[str] = []  # the request's admissible schedule/move/reply calls
        self._looked: set[str] = set()  # days listed or queried
        self._asked: set[str] = set()  # free_slots calls made

    def _new_task(self, rng: random.Random) -> str:
        while True:  # draw until the request has an answer; deterministic given the seed
            self.events = _random_week(rng)
            words = self._draw_request(rng)
            if words:
                break
        self._looked, self._asked = set(), set()
        if rng.random() < self.typed:
            words = as_typed(words, rng, self.wordings, PROTECTED)
        self.request = words
        self.goal = (
            "You are a personal assistant managing a calendar (working hours 09:00-17:00 on a "
            "30-minute grid; morning is 09:00-12:00, afternoon 13:00-17:00). Resolve this "
            f'request: "{words}" Rules: a free time means the earliest one that fits; never '
            'double-book; finish with a reply: "reply DAY HH:MM" for a slot, "reply done" after '
            "a change."
        )
        return f'User: "{words}"'

    def _free(self, event: Event, ignore: Event | None = None) -> bool:
        return event.start + event.minutes <= CLOSE and not any(
            e.overlaps(event) for e in self.events if e != ignore
        )

    def free_starts(
        self, day: str, minutes: int, window: str, ignore: Event | None = None
    ) -> list[int]:
        """The starts in `window` of `day` where `minutes` free minutes fit, earliest first
        (`ignore`: an event that is being moved, so its own time counts as free)."""
        low, high = WINDOWS[window]
        starts = range(low, high - minutes + 1, SLOT)
        return [s for s in starts if self._free(Event(day, s, minutes, ""), ignore)]

    def _draw_request(self, rng: random.Random) -> str:
        """Choose a request for the current week; '' when it has no answer (draw again)."""
        self.case = rng.choice(list(TEMPLATES))
        self.day = rng.choice(DAYS)
        window = rng.choice(list(WINDOWS))
        minutes = rng.choice(LENGTHS)
        person = rng.choice(PEOPLE)
        event = None
        if self.case == "move":
            day_events = sorted(e for e in self.events if e.day == self.day)
            if not day_events:
                return ""
            event = rng.choice(day_events)
            window = "afternoon" if event.start < WINDOWS["morning"][1] else "morning"
            minutes = event.minutes
        starts = self.free_starts(self.day, minutes, window, ignore=event)
        if not starts:
            return ""
        low, high = WINDOWS[window]
        grid = [hhmm(s) for s in range(low, high - minutes + 1, SLOT)]
        first = hhmm(starts[0])
        self._query = f"free_slots {self.day} {minutes} {window}"
        if event is not None:
            self._query = f"move_options {self.day} {hhmm(event.start)} {window}"
        self._moved = event
        if self.case == "find_slot":
            self.expected = set(self.events)
            self.answer = f"{self.day} {first}"
            self._options = [f"reply {self.day} {t}" for t in grid]
        elif self.case == "schedule":
            self.expected = self.events | {
                Event(self.day, starts[0], minutes, f"meeting with {person}")
            }
            self.answer = "done"
            self._options = [f"schedule {self.day} {t} {minutes} {person}" for t in grid]
            self._options.append("reply done")
        else:
            self.expected = (self.events - {event}) | {replace(event, start=starts[0])}
            self.answer = "done"
            self._options = [f"move {self.day} {hhmm(event.start)} {t}" for t in grid]
            self._options.append("reply done")
        length, span = _length_words(minutes, rng)
        template = rng.choice(split_wordings(TEMPLATES[self.case], self.wordings))
        words = template.format(
            day=self.day.capitalize(),
            window=window,
            length=length,
            span=span,
            person=person.capitalize(),
            old=hhmm(event.start) if event else "",
            title=event.title if event else "",
        )
        return words[0].upper() + words[1:]

    def _admissible(self) -> list[str]:
        calls = [f"list_events {d}" for d in DAYS]
        calls += [f"free_slots {d} {m} {w}" for d in DAYS for m in LENGTHS for w in WINDOWS]
        day_events = sorted(e for e in self.events if e.day == self.day)
        calls += [
            f"move_options {self.day} {hhmm(e.start)} {w}" for e in day_events for w in WINDOWS
        ]
        return calls + self._options

    def _expert(self) -> str:
        if self._query not in self._asked:
            return self._query
        if self.events != self.expected:
            return next(o for o in self._options if self._would_solve(o))
        return f"reply {self.answer}"

    def _would_solve(self, call: str) -> bool:
        """Whether this schedule/move call turns the calendar into the expected one."""
        tool, *args = call.split()
        change = self._change(tool, args)
        return isinstance(change, tuple) and _changed(self.events, *change) == self.expected

    def _change(self, tool: str, args: list[str]) -> tuple[Event | None, Event] | ToolResult:
        """The (removed event or None, added event) a schedule/move would make, or its refusal."""
        if tool == "schedule":
            if (
                len(args) != 4
                or args[0] not in DAYS
                or not (args[2].isascii() and args[2].isdigit())
            ):
                return self._usage("schedule")
            start, minutes = parse_time(args[1]), int(args[2][:4])
            if start is None or minutes <= 0 or minutes % SLOT:
                return _refusal(
                    "working_hours",
                    f"{args[1]} for {args[2]} minutes is not on the grid 09:00-16:30 in {SLOT}-minute steps",
                )
            new, old = Event(args[0], start, minutes, f"meeting with {args[3].lower()}"), None
        else:
            if len(args) != 3 or args[0] not in DAYS:
                return self._usage("move")
            start, to = parse_time(args[1]), parse_time(args[2])
            old = next((e for e in self.events if e.day == args[0] and e.start == start), None)
            if old is None:
                return ToolResult(f"error: no event starts at {args[1][:8]} on {args[0]}")
            if to is None:
                return _refusal(
                    "working_hours", f"{args[2][:8]} is not a time on the grid 09:00-16:30"
                )
            new = replace(old, start=to)
        if new.start + new.minutes > CLOSE:
            return _refusal("working_hours", f"{new} ends after 17:00")
        clash = [str(e) for e in self.events if e != old and e.overlaps(new)]
        if clash:
            return _refusal("no_double_booking", f"{new} overlaps {'; '.join(clash)}")
        return old, new

    def _apply(self, tool: str, args: list[str]) -> ToolResult:
        change = self._change(tool, args)
        if isinstance(change, ToolResult):
            return change
        old, new = change
        self.events = _changed(self.events, old, new)
        verb = "scheduled" if old is None else f"moved {hhmm(old.start)} to"
        observation = f"{verb} {new.day} {new}"
        if self.events != self.expected:
            return ToolResult(
                observation, ("lost", f"{observation}: not what the request asked for")
            )
        return ToolResult(observation)

    def _schedule(self, args: list[str]) -> ToolResult:
        return self._apply("schedule", args)

    def _move(self, args: list[str]) -> ToolResult:
        return self._apply("move", args)

    def _list_events(self, args: list[str]) -> ToolResult:
        if len(args) != 1 or args[0] not in DAYS:
            return ToolResult(
                self._usage("list_events").observation + f" (DAY one of {', '.join(DAYS)})",
                rule="usage",
            )
        self._looked.add(args[0])
        day = sorted(e for e in self.events if e.day == args[0])
        listed = "; ".join(f"{hhmm(e.start)} {e.title} ({e.minutes} min)" for e in day)
        return ToolResult(f"{args[0]}: " + (listed or "no events"))

    def _free_slots(self, args: list[str]) -> ToolResult:
        if (
            len(args) != 3
            or args[0] not in DAYS
            or args[2] not in WINDOWS
            or args[1] not in map(str, LENGTHS)
        ):
            return self._usage("free_slots")
        self._looked.add(args[0])
        self._asked.add(" ".join(["free_slots", *args]))
        starts = self.free_starts(args[0], int(args[1]), args[2])
        found = " ".join(hhmm(s) for s in starts) or "none"
        return ToolResult(f"{args[0]} {args[2]}, free for {args[1]} minutes at: {found}")

    def _move_options(self, args: list[str]) -> ToolResult:
        if len(args) != 3 or args[0] not in DAYS or args[2] not in WINDOWS:
            return self._usage("move_options")
        start = parse_time(args[1])
        event = next((e for e in self.events if e.day == args[0] and e.start == start), None)
        if event is None:
            return ToolResult(f"error: no event starts at {args[1][:8]} on {args[0]}")
        self._looked.add(args[0])
        self._asked.add(" ".join(["move_options", *args]))
        starts = self.free_starts(args[0], event.minutes, args[2], ignore=event)
        found = " ".join(hhmm(s) for s in starts) or "none"
        return ToolResult(
            f"{args[0]} {hhmm(event.start)} {event.title} ({event.minutes} min) fits in the "
            f"{args[2]} at: {found}"
        )

    def _reply(self, args: list[str]) -> ToolResult:
        text = " ".join(args)
        if not text:
            return self._usage("reply")
        observation = f"reply sent: {text[:40]}"
        if text != self.answer:
            return ToolResult(
                observation, ("lost", f"replied {text[:40]!r}; the answer was {self.answer!r}")
            )
        if self.day not in self._looked:
            return ToolResult(
                observation, ("lost", f"replied without looking at {self.day}'s calendar")
            )
        if self.events != self.expected:
            return ToolResult(observation, ("lost", "replied before making the requested change"))
        return ToolResult(observation, ("won", f"replied {text!r} with the calendar as requested"))


def _refusal(rule: str, why: str) -> ToolResult:
    """A forbidden change: nothing is written, and the episode is lost on that rule."""
    return ToolResult(
        f"error: refused ({rule}): {why}",
        ("lost", f"asked for a forbidden change: {why} ({rule})"),
        rule,
    )


def _changed(events: set[Event], old: Event | None, new: Event) -> set[Event]:
    """The calendar with `old` (if any) replaced by `new`."""
    return (events - {old}) | {new}


def _random_week(rng: random.Random) -> set[Event]:
    """A plausible busy week: each slot starts a 30- or 60-minute event with probability 0.35."""
    events = set()
    for day in DAYS:
        t = OPEN
        while t < CLOSE:
            minutes = rng.choice(LENGTHS)
            if rng.random() < 0.35 and t + minutes <= CLOSE:
                title = rng.choice(TITLES)
                if title == "1:1":
                    title = f"1:1 with {rng.choice(PEOPLE)}"
                events.add(Event(day, t, minutes, title))
                t += minutes
            else:
                t += SLOT
    return events

"""What the tool-use tasks share: tool calls as text, an audit record of each, and people's typing.

The two tasks are `customer_service.CustomerServiceEnv` (a support desk on SQLite) and
`calendar_assistant.CalendarEnv` (a personal assistant's week). Each episode a simulated user
writes one request, drawn by the seed from the task's wordings; the agent answers with tool calls
written as text ("lookup_order 1042", "free_slots monday 30 morning"), and each tool's output is
the next observation. A call that is not valid, or that the rules forbid, is refused with an
"error: ..." observation before anything changes; a forbidden one also ends the episode as lost,
with the rule in the verdict. Every call, allowed or refused, is a row of the audit table
(`labkit.agents.guardrails.AuditLog`). Success is judged on the final state (the database rows,
the calendar), never on what the agent says it did.

`info` carries the INFO_KEYS, a short admissible list computed from the state, the scripted
expert's next call, and at the end "verdict" (why the episode was won or lost).

Wordings: each task's request templates are split into those training may see ("train") and
held-out ones ("heldout"), and a request may be typed as people type (`as_typed`: lower or upper
case, typos, chatter around it).
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from typing import Any

from labkit.agents.core import EnvError
from labkit.agents.guardrails import AuditLog

Outcome = tuple[str, str] | None  # ("won" | "lost", why) when the call ended the episode
WORDINGS = ("train", "heldout", "all")  # which request templates an environment draws from
USAGE_RULE = "usage"  # the audit's rule for a call that is not a valid call at all


@dataclass
class ToolResult:
    """What one tool call did: its output, whether it ended the episode, and what refused it."""

    observation: str
    outcome: Outcome = None
    rule: str = ""  # the rule that refused the call ('' when it was carried out)


def usage_error(usage: str) -> ToolResult:
    """A call that is not a valid call: refused, and the episode goes on."""
    return ToolResult(f"error: usage: {usage}", rule=USAGE_RULE)


class ToolEnv:
    """Seeding, step counting, truncation, the audit trail and the info dict of a tool-use task.

    Subclasses set `name` and `tools` (tool -> usage) and define `_new_task(rng) -> request`,
    `_admissible()`, `_expert()` and one method `_<tool>(args) -> ToolResult` per tool.
    """

    name = ""
    tools: dict[str, str] = {}

    def __init__(
        self,
        max_steps: int = 10,
        wordings: str = "train",
        typed: float = 0.5,
        db_path: str | None = None,
    ) -> None:
        """Args:
            max_steps: tool calls before the episode is truncated.
            wordings: which request templates to draw from: "train", "heldout" or "all".
            typed: probability that a request is typed as people type (see `as_typed`).
            db_path: a SQLite file for the audit trail (and the desk's tables); None: in memory.
        Raises:
            ValueError: max_steps < 1, an unknown `wordings`, or `typed` outside [0, 1].
        """
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}.")
        if wordings not in WORDINGS:
            raise ValueError(f"wordings must be one of {WORDINGS}, got {wordings!r}.")
        if not 0.0 <= typed <= 1.0:
            raise ValueError(f"typed is a probability in [0, 1], got {typed}.")
        self.max_steps, self.wordings, self.typed = max_steps, wordings, typed
        self.db = sqlite3.connect(db_path or ":memory:")
        self.audit = AuditLog(self.db)
        self.seed: int | None = None
        self.goal = ""
        self.request = ""  # the user's words this episode
        self._steps = 0
        self._done = True
        self._won = self._lost = False
        self._verdict = ""

    def reset(self, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        """Start a new task (seed None: the next seed after the last one, 0 at first).

        Returns:
            (the user's message, info).
        """
        if self.db is None:
            raise EnvError("the environment is closed; make a new one.")
        if seed is None:
            seed = 0 if self.seed is None else self.seed + 1
        self.seed = seed
        self._steps, self._done, self._won, self._lost, self._verdict = 0, False, False, False, ""
        observation = self._new_task(random.Random(seed))
        self.audit.begin(self.name, seed, self._customer(), self.request)
        return observation, self._info()

    def _customer(self) -> int | None:
        """The id of the customer the session is bound to (None where there is none)."""
        return None

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Run one tool call and record it in the audit trail.

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
            result = getattr(self, "_" + tool)(args)
        else:
            usage = "; ".join(self.tools.values())
            result = ToolResult(
                f"error: unknown tool {tool[:40]!r}. Tools: {usage}", rule=USAGE_RULE
            )
        self.audit.record(tool[:40], " ".join(args)[:200], result.observation, result.rule)
        if result.outcome is not None:
            self._won, self._lost = result.outcome[0] == "won", result.outcome[0] == "lost"
            self._verdict = result.outcome[1]
        terminated = result.outcome is not None
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        reward = 1.0 if self._won else 0.0
        return result.observation, reward, terminated, truncated, self._info()

    def _usage(self, tool: str) -> ToolResult:
        return usage_error(self.tools[tool])

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
        """Close the database (the audit trail stays in a db_path file)."""
        if self.db is not None:
            self.db.close()
            self.db = None


def split_wordings(templates: tuple[str, ...], wordings: str) -> tuple[str, ...]:
    """The templates of a split: 'train' the first two thirds, 'heldout' the rest, 'all' all."""
    cut = -(-2 * len(templates) // 3)  # ceil(2n/3): training always has the larger share
    return {"train": templates[:cut], "heldout": templates[cut:], "all": templates}[wordings]


# ---------------------------------------------------------------------------------------------
# People's typing

CHATTER = {
    "train": (
        ("Hi,", "Hello,", "Good morning,", "Hey there,", "Sorry to bother you,"),
        ("Thanks!", "Thank you.", "Cheers", "Thanks in advance.", "Have a nice day."),
    ),
    "heldout": (
        ("Hiya!", "Dear support team,", "ok so", "Quick question:"),
        ("thx", "Many thanks, have a good weekend.", "Appreciate it!!", "ty"),
    ),
}


def as_typed(
    text: str, rng: random.Random, wordings: str = "train", protect: frozenset[str] = frozenset()
) -> str:
    """`text` as a person might type it: maybe lower or upper case, a typo or two, some chatter.

    Words holding a digit and the words in `protect` (lower case: a tool's arguments, such as a
    day or a name) keep their letters, so the request still says the same thing.
    """
    words = text.split()
    for _ in range(rng.choice((0, 1, 1, 2))):  # typos: swap or drop one letter of a long word
        i = rng.randrange(len(words))
        word = words[i]
        core = word.strip(".,!?\"'").lower()
        if len(word) < 4 or any(c.isdigit() for c in word) or core in protect:
            continue
        j = rng.randrange(1, len(word) - 2)
        if rng.random() < 0.5:
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
        else:
            words[i] = word[:j] + word[j + 1 :]
    text = " ".join(words)
    greetings, closings = CHATTER["train" if wordings == "train" else "heldout"]
    if rng.random() < 0.5:
        text = f"{rng.choice(greetings)} {text}"
    if rng.random() < 0.4:
        text = f"{text} {rng.choice(closings)}"
    case = rng.random()
    if case < 0.3:
        text = text.lower()
    elif case < 0.4:
        text = text.upper()
    return text

"""Policies driven by a language model: score every admissible action, or write one.

    P(action | prompt) = prod_t P(w_t | w_<t, prompt)        (the action text, then END_OF_ACTION)

`format_prompt` is the one place where an agent's situation becomes text: behaviour cloning writes
its training transcripts with it and the policies act on it, so training and acting read the same
text. `LMPolicy` scores all admissible actions from one encoding of the prompt and chooses from the
softmax over those scores; `GenerativePolicy` lets the model write the action and maps what it wrote
onto the admissible set by a stated rule, saying so in `Decision.note`.
"""

from __future__ import annotations

import difflib
import inspect
import re
from typing import TYPE_CHECKING, Any, Protocol

import torch

from labkit.agents.core import Decision
from labkit.generate import generate
from labkit.likelihood import score_continuations
from labkit.model import LSTMLanguageModel
from labkit.tokenizer import one_typo_away

if TYPE_CHECKING:
    from labkit.tokenizer import Tokenizer

ACTION_MARK = "> "  # what precedes every action in a prompt or transcript
END_OF_ACTION = (
    "\n"  # scored after each action, so that "go" cannot win by being a prefix of "go east"
)
PLACES = (
    "",
    "top",
    "bottom",
)  # where format_prompt puts the request and the goal (show_request, show_goal)
MIN_ADMISSIBLE_MASS = 1e-3  # below this total P(admissible actions), a decision carries a note


# Lengths of time as people write them, read as minutes (format_prompt's read_minutes): a half
# hour in any spelling is 30, an hour 60, "2 hours" 120, "45 mins" 45.
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "fifteen": 15, "twenty": 20,
                 "thirty": 30, "forty-five": 45, "forty five": 45, "sixty": 60,
                 "ninety": 90}  # fmt: skip
_NUMBER = r"\d+|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_DURATION = re.compile(
    r"\b(?:(?P<half>(?:a\s+|one\s+)?half(?P<h1>[- ]|\s+an?\s+)hour)"
    r"|(?P<long>(?:an?\s+)?hour[- ]long)"
    r"|(?P<hours>an|a|one|" + _NUMBER + r")(?P<h2>[- ]|\s+)(?:full[- ])?hours?"
    r"|(?P<minutes>" + _NUMBER + r")(?P<m>[- ]|\s*)(?:minutes?|mins?))\b",
    re.IGNORECASE,
)


def in_minutes(text: str) -> str:
    """`text` with each length of time written in minutes, in figures: "half an hour" and
    "thirty minutes" become "30 minutes", "a one-hour call" "a 60-minute call", "2 hours" "120
    minutes", "45 mins" "45 minutes", "an hour-long call" "60-minute call". A hyphen (an adjective:
    "a half-hour slot") is kept."""

    def minutes(match: re.Match) -> str:
        if match["half"]:
            count, joint = 30, match["h1"]
        elif match["long"]:
            count, joint = 60, "-"
        elif match["hours"]:
            word = match["hours"].lower()
            count = 60 * (1 if word in ("a", "an") else _NUMBER_WORDS.get(word) or int(word))
            joint = match["h2"]
        else:
            word = match["minutes"].lower()
            count, joint = _NUMBER_WORDS.get(word) or int(word), match["m"]
        return f"{count}-minute" if joint == "-" else f"{count} minutes"

    return _DURATION.sub(minutes, text)


# Order references as customers write them, read as "order 1042" (format_prompt's read_orders):
# "#1042", "order #1042", "ORDR 1042" (a word one typo from "order") and a bare 1042 (an id is four
# digits or more, as the desk's values are) all name one order, in the customer's own words only
# (REQUEST_QUOTE), so that the tools' answers and the agent's calls keep theirs.
ORDER_ID = r"\d{4,}"  # what an agent reads as an order id (recipes' by-reference values too)
_ORDER_WORDS = sorted({"order", *one_typo_away("order")}, key=len, reverse=True)
_ORDER_REF = re.compile(
    r"(?:\b(?:" + "|".join(_ORDER_WORDS) + r")\b\s*)?(?:#\s*|\b)(" + ORDER_ID + r")\b",
    re.IGNORECASE,
)
# A person's own words in an observation: the desk's 'Ana (customer 4) writes: "..."', the
# calendar's 'User: "..."'. Groups: the opening, the words, the closing quote.
REQUEST_QUOTE = re.compile(r'((?:writes|User): ")(.*)(")')


def name_orders(text: str) -> str:
    """`text` with each order reference in a customer's words written "order 1042": "#1042",
    "Order #1042", "ordr 1042" and "about 1042" become "order 1042", "about order 1042". Text
    outside a person's quoted words (REQUEST_QUOTE; a tool's answer, an agent's call) is left
    as it is."""

    def in_quote(match: re.Match) -> str:
        return match[1] + _ORDER_REF.sub(r"order \1", match[2]) + match[3]

    return REQUEST_QUOTE.sub(in_quote, text)


def _squeeze(text: str) -> str:
    """Trim each line and collapse runs of blank lines: game text is padded with layout whitespace."""
    lines = [line.strip() for line in text.strip().splitlines()]
    return re.sub(r"\n{2,}", "\n", "\n".join(lines))


def format_prompt(
    goal: str,
    history: list[dict[str, Any]],
    observation: str,
    history_steps: int | None = None,
    *,
    show_goal: bool | str = True,
    show_observation: bool = True,
    last_action: bool | str = False,
    show_request: str = "",
    read_minutes: bool = False,
    read_orders: bool = False,
    read_twice: bool = False,
) -> str:
    """The text an agent acts on: the goal, the last few (observation, action) pairs, then now.

        Goal: <goal>                      (show_goal=True or "top")
        Request: <observation 0>          (show_request="top", once the history window passed it)
        <observation t-k>
        > <action t-k>
        ...
        <observation t>                   (show_observation=True)
        <observation 0>                   (read_twice=True, at the first step only: t = 0)
        Request: <observation 0>          (show_request="bottom", likewise)
        Last action: <action t-1>         (last_action=True; "none" at the first step)
        Actions so far: <a 0>, <a 1>, ... (last_action="all"; "none" at the first step)
        Goal: <goal>                      (show_goal="bottom")
        >

    The prompt ends with ACTION_MARK, exactly where the action's text begins, so an action is scored
    (or written) as the prompt's continuation.

    Args:
        goal: what the agent is asked to do (info["goal"]).
        history: the episode so far, one dict per step with "observation" (the text the action
            answered) and "action".
        observation: the current observation.
        history_steps: how many past (observation, action) pairs to show: 0 none, None all
            (then the prompt is the whole episode so far, and every prompt of an episode is a
            prefix of the next one, unless last_action is on).
        show_goal: open with the goal (True or "top"), close with it ("bottom": the last line
            before the decision), or leave it out (False). Out where the goal adds nothing the
            observations do not say: Coin Collector's goal restates the walkthrough, a paragraph
            of direction words that a small LSTM must read past before each decision. Last,
            below the actions so far, where the goal's instructions decide each step (Treasure
            Hunter's "head west. After that, go north...": the actions counted first, then the
            instructions, the one after the last carried out kept).
        show_observation: write the current observation (True), or leave it out (False: where the
            goal and the actions so far decide every step, as in Treasure Hunter, whose room
            descriptions put exit words between the instructions and the decision).
        last_action: restate the last action near the decision (True), so that the model
            need not carry it across the observation (Coin Collector: the way back is the one exit
            not to take); or list every action of the episode so far ("all": where the agent is
            in a list of instructions is how many it has carried out).
        show_request: restate the episode's first observation (a tool-use task's request) when
            the history window no longer holds it: "top" above everything else, "bottom" after
            the current observation, "" not at all. With history_steps=0 and last_action, every
            decision reads the request, the tool's last answer and the call that asked for it,
            and nothing else; "bottom" puts the request nearer the decision, "top" the answer.
        read_minutes: write every length of time in minutes (`in_minutes`: "half an hour" ->
            "30 minutes"), so that a calendar's lengths are figures the model reads by reference,
            however the person spelt them.
        read_orders: write every order reference in a customer's words as "order 1042"
            (`name_orders`: "#1042", "ordr 1042" and a bare 1042 alike), so that the words next to
            an order's id are the same however the customer named it.
        read_twice: at the first step (no history yet), write the observation twice, one copy
            after the other. The LSTM reads a tool-use task's request a second time already
            holding all of it, so the words that decide the first call are read knowing what
            follows them (Zaremba & Sutskever 2014 doubled an LSTM's input for the same reason):
            the desk's held-out wordings 0.86 -> 0.97 on training seed 0 (README, Agents).
    Returns:
        The prompt.
    Raises:
        ValueError: the goal and the observation are both empty, or neither is shown (there is
            nothing to act on); a switch has a value it does not take.
    """
    if not goal.strip() and not observation.strip():
        raise ValueError(
            "the prompt would be empty: both the goal and the observation are blank; pass the "
            "environment's observation and info['goal'] (from reset or step)."
        )
    show_request = {True: "top", False: ""}.get(show_request, show_request)  # agent.json of old
    if show_request not in PLACES:
        raise ValueError(f"show_request must be one of {PLACES}, got {show_request!r}.")
    show_goal = {True: "top", False: ""}.get(show_goal, show_goal)
    if show_goal not in PLACES:
        raise ValueError(f"show_goal must be True, False or one of {PLACES}, got {show_goal!r}.")
    if last_action not in (True, False, "all"):
        raise ValueError(f"last_action must be True, False or 'all', got {last_action!r}.")
    if not show_observation and not show_goal:
        raise ValueError(
            "show_observation=False needs the goal shown (show_goal='top' or 'bottom'): "
            "without either, the prompt says nothing to act on."
        )
    parts = [f"Goal: {_squeeze(goal)}"] if show_goal == "top" else []
    past = history if history_steps is None else history[max(len(history) - history_steps, 0) :]
    request = f"Request: {_squeeze(history[0]['observation'])}" if history else ""
    restate = bool(show_request and history and len(past) < len(history))
    if restate and show_request == "top":
        parts.append(request)
    for step in past:
        parts.append(_squeeze(step["observation"]))
        parts.append(ACTION_MARK + step["action"])
    now = [_squeeze(observation)] if show_observation else []
    parts += now + now if read_twice and not history else now
    if restate and show_request == "bottom":
        parts.append(request)
    if last_action == "all":
        parts.append(f"Actions so far: {', '.join(s['action'] for s in history) or 'none'}")
    elif last_action:
        parts.append(f"Last action: {history[-1]['action'] if history else 'none'}")
    if show_goal == "bottom":
        parts.append(f"Goal: {_squeeze(goal)}")
    prompt = "\n".join(parts) + "\n" + ACTION_MARK
    prompt = in_minutes(prompt) if read_minutes else prompt
    return name_orders(prompt) if read_orders else prompt


LAYOUT_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(format_prompt).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
}  # show_goal, show_observation, last_action, show_request, read_minutes, read_orders, read_twice


def prompt_layout(**switches: Any) -> dict[str, Any]:
    """format_prompt's layout switches (its keyword-only arguments), its defaults filled in.

    The one list of the switches and their defaults is format_prompt's signature; the policies
    keep their layout as this dict (`prompt_options`, what agent.json stores).

    Raises:
        TypeError: a name that is no layout switch (the message lists those there are).
    """
    unknown = sorted(set(switches) - set(LAYOUT_DEFAULTS))
    if unknown:
        raise TypeError(
            f"{', '.join(unknown)}: no prompt layout switch; format_prompt takes "
            f"{', '.join(LAYOUT_DEFAULTS)}."
        )
    return {**LAYOUT_DEFAULTS, **switches}


def format_example(
    goal: str,
    history: list[dict[str, Any]],
    observation: str,
    action: str,
    history_steps: int | None = None,
    **options: bool,
) -> str:
    """One training example: the prompt `format_prompt` builds (with `options`), then the action."""
    return (
        format_prompt(goal, history, observation, history_steps, **options) + action + END_OF_ACTION
    )


def by_reference(prompt: str, actions: list[str], values: str) -> tuple[str, list[str], dict]:
    """Delexicalise: each value that the regex `values` finds in the prompt becomes a placeholder
    word, the same in the prompt and in every action (value_a for the first value met, value_b for
    the next, ...; matched without case). An action's argument is then chosen by reference ("the
    order the customer named", "the first free time listed") rather than copied digit by digit,
    which is how task-oriented dialogue systems let a small model handle ids it never saw.
    A named group in the regex types its values: `(?P<day>monday|tuesday)` names them day_a,
    day_b, ... (counted per type), so the model reads which kind of value a placeholder holds,
    not only in which order the request happened to name it.

    Returns:
        (the prompt, the actions, placeholder -> value as first written); unchanged, {} when
        `values` is empty. A value in an action that the prompt never mentions stays as it is.
    """
    if not values:
        return prompt, list(actions), {}
    pattern = re.compile(values, re.IGNORECASE)
    names: dict[str, str] = {}  # value (lower case) -> placeholder
    written: dict[str, str] = {}  # placeholder -> value as first written
    counts: dict[str, int] = {}  # type -> placeholders of that type so far

    def name(match: re.Match) -> str:
        key = match.group(0).lower()
        if key not in names:
            kind = match.lastgroup or "value"
            names[key] = f"{kind}_{_letters(counts.get(kind, 0))}"
            counts[kind] = counts.get(kind, 0) + 1
            written[names[key]] = match.group(0)
        return names[key]

    prompt = pattern.sub(name, prompt)
    actions = [pattern.sub(lambda m: names.get(m.group(0).lower(), m.group(0)), a) for a in actions]
    return prompt, actions, written


def _letters(index: int) -> str:
    """0 -> 'a', 25 -> 'z', 26 -> 'ba', ...: a placeholder's name, letters only (one word token)."""
    text = ""
    while True:
        index, digit = divmod(index, 26)
        text = chr(ord("a") + digit) + text
        if index == 0:
            return text


def _check_history_steps(history_steps: int | None) -> None:
    if history_steps is not None and history_steps < 0:
        raise ValueError(
            f"history_steps must be >= 0 (or None for the whole episode), got {history_steps}"
        )


class Scorer(Protocol):
    """A language model seen from a policy: it scores continuations of a prompt, or writes one."""

    def score(self, prompt: str, continuations: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log P(continuation + END_OF_ACTION | prompt) (N,) and token counts (N,)."""
        ...

    def write(
        self, prompt: str, max_new_tokens: int, greedy: bool, temperature: float, seed: int
    ) -> str:
        """The model's continuation of the prompt up to END_OF_ACTION (not included)."""
        ...


def check_prompt(prompt: str) -> None:
    """Raise ValueError for a blank prompt (shared by every Scorer)."""
    if not prompt.strip():
        raise ValueError(
            "the prompt is empty; an action's likelihood needs something to condition on. "
            "Build the prompt with format_prompt(goal, history, observation)."
        )


class LSTMScorer:
    """Scores actions with an LSTMLanguageModel: the prompt is encoded once, all actions batched."""

    def __init__(self, model: LSTMLanguageModel, tokenizer: Tokenizer) -> None:
        """Raises:
        ValueError: the tokenizer's vocabulary size differs from the model's.
        """
        if tokenizer.vocab_size != model.config.vocab_size:
            raise ValueError(
                f"the tokenizer has {tokenizer.vocab_size} tokens but the model was built for "
                f"{model.config.vocab_size}; use the tokenizer the model was trained with."
            )
        self.model = model
        self.tokenizer = tokenizer

    def score(self, prompt: str, continuations: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """log P(continuation + END_OF_ACTION | bos + prompt) for every continuation.

        Returns:
            (N,) summed log-probabilities and (N,) token counts, on the CPU.
        Raises:
            ValueError: an empty prompt.
        """
        check_prompt(prompt)
        context = self.tokenizer.encode(prompt, bos=True)
        candidates = [self.tokenizer.encode(c + END_OF_ACTION) for c in continuations]
        lengths = torch.tensor([len(c) for c in candidates], dtype=torch.float32)  # (N,)
        return score_continuations(self.model, context, candidates), lengths

    def write(
        self,
        prompt: str,
        max_new_tokens: int = 40,
        greedy: bool = True,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> str:
        """The model's continuation of bos + prompt, up to END_OF_ACTION or eos (not included).

        Raises:
            ValueError: an empty prompt.
        """
        check_prompt(prompt)
        return generate(
            self.model,
            self.tokenizer,
            prompt,
            max_new_tokens=max_new_tokens,
            greedy=greedy,
            temperature=temperature,
            seed=seed,
            stop=END_OF_ACTION,
        )


class LMPolicy:
    """Chooses among the admissible actions by their likelihood under a language model.

    P(a | prompt) is computed for every admissible action a; the policy's distribution is the
    softmax of those log-likelihoods (divided by the token count when `length_norm` is on, then by
    the temperature). `greedy` takes the most likely action, otherwise one is sampled.
    """

    def __init__(
        self,
        scorer: Scorer,
        history_steps: int | None = None,
        greedy: bool = True,
        temperature: float = 1.0,
        length_norm: bool = False,
        seed: int = 0,
        name: str = "lm",
        values: str = "",
        **layout: Any,
    ) -> None:
        """Args:
            history_steps, layout: the prompt's layout (history_steps, and format_prompt's
                switches by name: show_goal, last_action, ...; `prompt_layout`); a cloned agent
                must act with the layout it was trained on (`load_agent` does).
            values: a regex of the values read by reference (see `by_reference`; "" reads every
                value as text).
        Raises:
            ValueError: temperature <= 0 or history_steps < 0.
            TypeError: a layout switch format_prompt does not take.
        """
        if temperature <= 0:
            raise ValueError(
                f"temperature must be above 0, got {temperature}; use greedy=True to always "
                "take the most likely action."
            )
        _check_history_steps(history_steps)
        self.scorer = scorer
        self.history_steps = history_steps
        self.prompt_options = prompt_layout(**layout)
        self.values = values
        self.greedy = greedy
        self.temperature = temperature
        self.length_norm = length_norm
        self.seed = seed
        self.name = name
        self.last_prompt = ""  # the text the last decision was made on, for display
        self._generator = torch.Generator().manual_seed(seed)

    def reset(self) -> None:
        """Restart the sampling stream, so that an episode's choices depend only on its seed."""
        self._generator.manual_seed(self.seed)

    def distribution(self, prompt: str, actions: list[str]) -> tuple[torch.Tensor, str]:
        """The policy's probabilities over `actions` given `prompt`, and a note on any fallback.

        Returns:
            (N,) probabilities summing to 1, and "" or a sentence saying why the scores were not
            used as they are: the model gives every action zero probability (log-likelihood -inf
            or NaN; then the choice is uniform), or it puts almost all its mass on text outside
            the admissible set (then the admissible actions are still ranked by their scores).
        Raises:
            ValueError: an empty prompt or no actions.
        """
        if not actions:
            raise ValueError(
                "there are no admissible actions to choose from; the episode is over, "
                "call env.reset() before acting again."
            )
        logp, lengths = self.scorer.score(prompt, actions)  # (N,), (N,)
        logp = logp.double().nan_to_num(nan=-torch.inf, neginf=-torch.inf)  # (N,)
        if torch.isinf(logp).all():
            uniform = torch.full((len(actions),), 1.0 / len(actions), dtype=torch.float64)
            return uniform, (
                "the model gives every admissible action zero probability (or NaN); "
                "fell back to a uniform choice among them"
            )
        note = ""
        mass = float(logp.logsumexp(dim=0).exp())
        if mass < MIN_ADMISSIBLE_MASS:
            note = (
                f"the model puts only {mass:.2g} of its probability on the admissible actions "
                "(the rest on other text); chose among the admissible ones by their scores"
            )
        if self.length_norm:
            logp = logp / lengths.clamp_min(1)
        return torch.softmax(logp / self.temperature, dim=0), note

    def act(
        self, observation: str, info: dict[str, Any], history: list[dict[str, Any]]
    ) -> Decision:
        """Score every admissible action and choose one.

        Returns:
            A Decision with the action, the probabilities of all admissible actions, and the note
            from `distribution` when the model's scores needed a fallback.
        Raises:
            ValueError: no admissible actions, or an empty prompt.
        """
        actions = list(info["admissible_actions"])
        prompt = format_prompt(
            info["goal"], history, observation, self.history_steps, **self.prompt_options
        )
        self.last_prompt, candidates, _ = by_reference(prompt, actions, self.values)
        probs, note = self.distribution(self.last_prompt, candidates)  # (N,)
        if self.greedy:
            index = int(probs.argmax())
        else:
            index = int(torch.multinomial(probs, 1, generator=self._generator))
        return Decision(
            action=actions[index],
            probs={a: float(p) for a, p in zip(actions, probs, strict=True)},
            note=note,
        )


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def map_to_admissible(text: str, admissible: list[str]) -> tuple[str, str]:
    """Map free text onto the admissible action it means.

    The rule: the admissible action equal to `text` up to case and spacing; otherwise the one with
    the highest string similarity (difflib's ratio on the normalised strings; the first listed wins
    a tie). Only the first rule is silent.

    Returns:
        The admissible action, and "" for an exact match or a note saying what was mapped and why.
    Raises:
        ValueError: `admissible` is empty.
    """
    if not admissible:
        raise ValueError(
            "there are no admissible actions to map onto; the episode is over, call env.reset()."
        )
    wanted = _normal(text)
    for action in admissible:
        if _normal(action) == wanted:
            return action, ""
    ratios = [difflib.SequenceMatcher(None, wanted, _normal(a)).ratio() for a in admissible]
    best = max(range(len(admissible)), key=lambda i: (ratios[i], -i))
    what = f"generated {text!r}" if text.strip() else "generated no text"
    return admissible[best], (
        f"{what}, which is not an admissible action; mapped to {admissible[best]!r}, the most "
        f"similar admissible action (string similarity {ratios[best]:.2f})"
    )


class GenerativePolicy:
    """The model writes the action; text outside the admissible set is mapped by `map_to_admissible`.

    Every mapping is recorded in `Decision.note` (with what the model wrote), so a trajectory shows
    how often the model's own words were not a valid action.
    """

    def __init__(
        self,
        scorer: Scorer,
        history_steps: int | None = None,
        max_new_tokens: int = 40,
        greedy: bool = True,
        temperature: float = 1.0,
        seed: int = 0,
        name: str = "generative",
        values: str = "",
        **layout: Any,
    ) -> None:
        """Args:
            history_steps, layout: the prompt's layout (history_steps, and format_prompt's
                switches by name: show_goal, last_action, ...; `prompt_layout`).
            values: a regex of the values read by reference (see `by_reference`): what the
                model writes has its placeholders put back.
        Raises:
            ValueError: temperature <= 0, history_steps < 0 or max_new_tokens < 1.
            TypeError: a layout switch format_prompt does not take.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be above 0, got {temperature}; or use greedy=True")
        _check_history_steps(history_steps)
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.scorer = scorer
        self.history_steps = history_steps
        self.prompt_options = prompt_layout(**layout)
        self.values = values
        self.max_new_tokens = max_new_tokens
        self.greedy = greedy
        self.temperature = temperature
        self.seed = seed
        self.name = name
        self.last_prompt = ""
        self._generator = torch.Generator().manual_seed(seed)

    def reset(self) -> None:
        """Restart the sampling stream, so that an episode's choices depend only on its seed."""
        self._generator.manual_seed(self.seed)

    def act(
        self, observation: str, info: dict[str, Any], history: list[dict[str, Any]]
    ) -> Decision:
        """Write an action and map it onto the admissible set.

        Returns:
            A Decision whose action is admissible; its note says what the model wrote whenever
            that was not itself an admissible action.
        Raises:
            ValueError: no admissible actions, or an empty prompt.
        """
        prompt = format_prompt(
            info["goal"], history, observation, self.history_steps, **self.prompt_options
        )
        self.last_prompt, _, written = by_reference(prompt, [], self.values)
        seed = int(torch.randint(2**62, (), generator=self._generator))
        text = self.scorer.write(
            self.last_prompt, self.max_new_tokens, self.greedy, self.temperature, seed
        )
        for placeholder, value in sorted(written.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(placeholder, value.lower())
        action, note = map_to_admissible(text.strip(), list(info["admissible_actions"]))
        return Decision(action=action, note=note)

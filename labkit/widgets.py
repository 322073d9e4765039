"""Interactive agent demos with ipywidgets: step an agent, watch its distribution, override it.

    demo = AgentDemo({"coin_collector": make_coin_env}, {"lstm": agent, "random": RandomPolicy()})
    display(demo.layout)

    chat = ServiceChat(agent)          # a customer-service desk: type a request, watch the agent
    display(chat.layout)

All logic lives in these classes, not in notebook cells, so tests drive them as a person would:
set a widget's `.value`, call a Button's `.click()`, and read `chart.probs` / `chart.chosen` (the
bars drawn, an `ActionBars`: an HTML widget, so that no page has a chart bundle to load).
Each episode is recorded as a harness `Trajectory` with the harness's step dicts, so what a person
did in a demo can be saved and replayed like any other run.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from labkit.agents.core import Decision, Env, InvalidActionError, Policy
from labkit.agents.customer_service import CustomerServiceEnv
from labkit.agents.guardrails import audit_trail, format_audit
from labkit.agents.harness import Trajectory, run_episode
from labkit.plots import action_bars_html


def _pre(lines: list[str]) -> str:
    """Lines as preformatted, escaped HTML."""
    return "<pre style='white-space: pre-wrap'>" + html.escape("\n".join(lines)) + "</pre>"


class ActionBars(widgets.HTML):
    """A policy's distribution over actions as bars (`labkit.plots.action_bars_html`), the chosen
    action in red: an HTML widget redrawn by setting its value, with no script for a page to load.

    `probs` and `chosen` are the bars drawn now.
    """

    def __init__(self, heading: str = "The policy's distribution over admissible actions") -> None:
        super().__init__()
        self.heading = heading
        self.probs: dict[str, float] = {}
        self.chosen: str | None = None
        self.show({})

    def show(self, probs: dict[str, float], chosen: str | None = None) -> None:
        """Draw `probs` (action -> probability), `chosen` highlighted; {} shows no bars."""
        self.probs, self.chosen = dict(probs), chosen
        self.value = action_bars_html(self.probs, chosen, self.heading)


class AgentDemo:
    """Choose an environment and a policy, then Step, Run or Reset; override any decision.

    Before each step the policy's decision for the current state is computed and shown: its
    distribution as bars (`ActionBars`, the chosen action in red) and the chosen action
    pre-selected in the override Dropdown. Step sends the policy's action; "Send override" sends
    the Dropdown's action instead, and the step's note records what the agent would have done.
    """

    def __init__(
        self,
        envs: dict[str, Callable[[], Env]],
        policies: dict[str, Policy],
        seed: int = 0,
        max_steps: int = 50,
    ) -> None:
        """Args:
            envs: name -> a zero-argument factory making that environment.
            policies: name -> policy.
            seed: the first episode's seed; Reset moves to the next one.
            max_steps: Run stops after this many steps of an episode.
        Raises:
            ValueError: no environments or no policies.
        """
        if not envs or not policies:
            raise ValueError("AgentDemo needs at least one environment and one policy.")
        self.envs, self.policies = envs, policies
        self.seed, self.max_steps = seed, max_steps
        self.env_name = widgets.Dropdown(options=list(envs), description="environment")
        self.policy_name = widgets.Dropdown(options=list(policies), description="policy")
        self.game = widgets.BoundedIntText(value=seed, min=0, max=10**6, description="game")
        self.step_button = widgets.Button(description="Step")
        self.run_button = widgets.Button(description="Run")
        self.reset_button = widgets.Button(description="Reset (next game)")
        self.override = widgets.Dropdown(options=[], description="override")
        self.override_button = widgets.Button(description="Send override")
        self.status = widgets.HTML()
        self.transcript = widgets.HTML()
        self.chart = ActionBars()
        self.layout = widgets.VBox(
            [
                widgets.HBox([self.env_name, self.policy_name, self.game]),
                widgets.HBox([self.step_button, self.run_button, self.reset_button]),
                widgets.HBox([self.override, self.override_button]),
                self.status,
                self.chart,
                self.transcript,
            ]
        )
        self.env: Env | None = None
        self.trajectories: list[Trajectory] = []  # every episode played, the current one last
        self.pending: Decision | None = None  # the policy's decision for the current state
        self.env_name.observe(lambda _: self.load(), names="value")
        self.policy_name.observe(lambda _: self._decide(), names="value")
        self.step_button.on_click(lambda _: self.step())
        self.run_button.on_click(lambda _: self.run())
        self.reset_button.on_click(lambda _: self.reset(self.seed + 1))
        self.game.observe(lambda change: self._choose_game(change["new"]), names="value")
        self.override_button.on_click(lambda _: self.step(self.override.value))
        self.load()

    @property
    def trajectory(self) -> Trajectory:
        """The episode being played."""
        return self.trajectories[-1]

    @property
    def done(self) -> bool:
        return bool(self.trajectory.outcome)

    def load(self) -> None:
        """Build the chosen environment and start an episode with the current seed."""
        if self.env is not None:
            self.env.close()
        self.env = self.envs[self.env_name.value]()
        self.reset(self.seed)

    def _choose_game(self, seed: int) -> None:
        """A seed typed in the game box starts that episode (reset() also sets the box)."""
        if seed != self.seed:
            self.reset(seed)

    def reset(self, seed: int) -> None:
        """Start episode `seed` of the current environment."""
        self.seed = seed
        self.game.value = seed
        self.observation, self.info = self.env.reset(seed)
        self.trajectories.append(
            Trajectory(
                env=self.env.name,
                seed=seed,
                policy=self.policy_name.value,
                goal=str(self.info["goal"]),
                max_steps=self.max_steps,
                loop_k=0,
                score=self.info["score"],
                max_score=self.info["max_score"],
                final_observation=self.observation,
            )
        )
        self._decide()

    def _decide(self) -> None:
        """Ask the policy about the current state and show its answer (nothing once done)."""
        self.pending = None
        if not self.done:
            policy = self.policies[self.policy_name.value]
            self.pending = policy.act(self.observation, self.info, self.trajectory.steps)
        self._refresh()

    def step(self, action: str | None = None) -> None:
        """Send the policy's action, or `action` instead (an override).

        Raises:
            InvalidActionError: `action` is not admissible now (nothing is sent).
            RuntimeError: the episode is over (press Reset).
        """
        if self.done or self.pending is None:
            raise RuntimeError("the episode is over: press Reset to start the next game.")
        admissible = list(self.info["admissible_actions"])
        note = self.pending.note
        if action is None:
            action = self.pending.action
        elif action not in admissible:
            raise InvalidActionError(
                f"{action!r} is not admissible now; choose one of: {', '.join(admissible)}."
            )
        elif action != self.pending.action:
            note = f"overridden by the user: the agent chose {self.pending.action!r}"
        t = self.trajectory
        record = {
            "step": t.num_steps + 1,
            "observation": self.observation,
            "action": action,
            "reward": 0.0,
            "score": t.score,
            "probs": dict(self.pending.probs),
            "note": note,
            "admissible": admissible,
            "expert": self.info.get("expert_action"),
            "valid": True,
            "done": False,
        }
        self.observation, reward, terminated, truncated, self.info = self.env.step(action)
        record.update(reward=float(reward), score=self.info["score"], done=terminated or truncated)
        t.steps.append(record)
        t.total_reward += float(reward)
        t.score, t.max_score, t.final_observation = (
            self.info["score"],
            self.info["max_score"],
            self.observation,
        )
        if terminated:
            t.outcome = "won" if self.info["won"] else "lost"
            t.reason = self.info.get("verdict") or f"the environment ended the episode: {t.outcome}"
        elif truncated or t.num_steps >= self.max_steps:
            t.outcome, t.reason = "truncated", "the step limit"
        self._decide()

    def run(self) -> None:
        """Step with the policy's actions until the episode ends."""
        while not self.done:
            self.step()

    def _refresh(self) -> None:
        t = self.trajectory
        probs = self.pending.probs if self.pending else {}
        chosen = self.pending.action if self.pending else None
        self.chart.show(probs, chosen)
        self.override.options = [] if self.done else list(self.info["admissible_actions"])
        self.override.value = chosen
        for button in (self.step_button, self.run_button, self.override_button):
            button.disabled = self.done
        state = f"{t.outcome}: {t.reason}" if self.done else f"the agent would play {chosen!r}"
        note = f" ({self.pending.note})" if self.pending and self.pending.note else ""
        self.status.value = (
            f"<b>{html.escape(t.env)}</b> game {t.seed}, step {t.num_steps}, score "
            f"{t.score:g}/{t.max_score:g}. {html.escape(state + note)}"
        )
        lines = [f"Goal: {t.goal}", ""]
        for s in t.steps:
            lines += [
                s["observation"],
                f"> {s['action']}" + (f"   [{s['note']}]" if s["note"] else ""),
            ]
        lines.append(self.observation)
        self.transcript.value = _pre(lines)


_QUOTED = re.compile(r'"(.*)"', re.S)  # the customer's words inside the desk's observation


class _TypedRequest:
    """A CustomerServiceEnv whose every reset takes a person's words as the customer's request
    (`CustomerServiceEnv.reset(seed, request=...)`), so that the harness can run it as any env."""

    def __init__(self, env: CustomerServiceEnv, request: str) -> None:
        self.env, self.request, self.name = env, request, env.name

    def reset(self, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        return self.env.reset(seed, request=self.request)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return self.env.step(action)

    def close(self) -> None:
        self.env.close()


class ServiceChat:
    """A customer-service desk: a person types a request, the agent resolves it with tool calls.

    The shop's database comes from the episode seed; the customer's orders are listed so that the
    person can write about one of them, and the desk's own request is suggested in the text box.
    Sending runs a whole episode on the typed words (harness `run_episode`), shows every tool call
    and its output, the desk's verdict by its rules for that request, and the episode's audit
    trail: each call allowed or refused, and by which rule. One desk serves every conversation,
    so its audit table (in `db_path`, if given) holds them all.
    """

    def __init__(
        self, policy: Policy, seed: int = 0, max_steps: int = 10, db_path: str | None = None
    ) -> None:
        self.policy, self.seed, self.max_steps = policy, seed, max_steps
        self.desk = CustomerServiceEnv(max_steps, db_path=db_path)
        self.request = widgets.Text(description="you write", layout={"width": "60%"})
        self.send_button = widgets.Button(description="Send")
        self.new_button = widgets.Button(description="New customer")
        self.customer = widgets.BoundedIntText(value=seed, min=0, max=10**6, description="shop")
        self.orders = widgets.HTML()
        self.conversation = widgets.HTML()
        self.audit = widgets.HTML()
        self.chart = ActionBars("The agent's last decision")
        self.layout = widgets.VBox(
            [
                self.orders,
                widgets.HBox([self.request, self.send_button, self.new_button, self.customer]),
                self.conversation,
                self.audit,
                self.chart,
            ]
        )
        self.trajectories: list[Trajectory] = []  # every conversation, the latest last
        self.send_button.on_click(lambda _: self.send())
        self.new_button.on_click(lambda _: self.new_customer(self.seed + 1))
        self.customer.observe(lambda change: self._choose_shop(change["new"]), names="value")
        self.new_customer(seed)

    def _choose_shop(self, seed: int) -> None:
        """A seed typed in the shop box opens that shop (new_customer() also sets the box)."""
        if seed != self.seed:
            self.new_customer(seed)

    def new_customer(self, seed: int) -> None:
        """Open the shop of episode `seed`: list the customer's orders, suggest their request."""
        self.seed = seed
        self.customer.value = seed
        env = CustomerServiceEnv(self.max_steps)  # a look at the shop; the audit is the desk's
        observation, _ = env.reset(seed)
        rows = env.db.execute(
            "SELECT id, item, price, status FROM orders WHERE customer_id = ? ORDER BY id",
            (env.customer,),
        ).fetchall()
        name = observation.split(" (customer")[0]
        lines = [f"You are {name} (customer {env.customer}). Your orders:"]
        lines += [f"  {i}  {item:<15} ${price:>7.2f}  {status}" for i, item, price, status in rows]
        self.orders.value = _pre(lines)
        found = _QUOTED.search(observation)
        self.request.value = found.group(1) if found else ""
        self.conversation.value = self.audit.value = ""
        self.chart.show({})
        env.close()

    def send(self) -> Trajectory:
        """Run one episode on the typed request and show it.

        Returns:
            The episode's trajectory (also appended to `trajectories`).
        Raises:
            ValueError: the request is blank, names none of the customer's orders, or asks for
                nothing the desk does (nothing is run; the conversation says what to write).
        """
        words = self.request.value.strip()
        if not words:
            self.conversation.value = _pre(["Type a request first, e.g. 'Where is my order 1042?'"])
            raise ValueError("the request is empty: type what the customer wants, then Send.")
        lines = [f"Customer: {words}"]
        last: dict[str, Any] = {}

        def show(record: dict[str, Any]) -> None:
            last.update(record)
            note = f"   [{record['note']}]" if record["note"] else ""
            lines.append(f"Agent:    {record['action']}{note}")
            self.conversation.value = _pre(lines)

        env = _TypedRequest(self.desk, words)
        try:
            env.reset(self.seed)  # the desk must understand the words before the agent acts
        except ValueError as e:
            self.conversation.value = _pre([f"Customer: {words}", f"Desk: {e}"])
            raise
        trajectory = run_episode(self.policy, env, self.seed, self.max_steps, on_step=show)
        # Each step's tool output is the next step's observation; the last one is final_observation.
        outputs = [s["observation"] for s in trajectory.steps[1:]] + [trajectory.final_observation]
        lines[1:] = [
            line
            for agent, output in zip(lines[1:], outputs, strict=True)
            for line in (agent, f"Tool:     {output}")
        ]
        lines.append(f"[{trajectory.outcome}] {trajectory.reason}")
        self.conversation.value = _pre(lines)
        trail = format_audit(audit_trail(self.desk.db))
        self.audit.value = "<b>Audit trail (every tool call, checked by the desk's rules)</b>"
        self.audit.value += _pre(trail.splitlines())
        self.chart.show(last.get("probs", {}), last.get("action"))
        self.trajectories.append(trajectory)
        return trajectory

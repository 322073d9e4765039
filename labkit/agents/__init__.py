"""The agent harness: environments, policies, episodes and evaluation, and behaviour cloning."""

from labkit.agents.baselines import AdversarialPolicy, ExpertPolicy, RandomPolicy
from labkit.agents.calendar_assistant import CalendarEnv
from labkit.agents.cloning import (
    agent_config,
    clone_expert,
    examples,
    expert_episodes,
    load_agent,
    train_agent,
)
from labkit.agents.core import INFO_KEYS, Decision, Env, EnvError, InvalidActionError, Policy
from labkit.agents.customer_service import CustomerServiceEnv
from labkit.agents.evaluation import PassKReport, pass_hat_k, repeated_trials
from labkit.agents.harness import (
    DamagedTailWarning,
    EvalReport,
    ReplayError,
    Trajectory,
    TrajectoryWriter,
    evaluate,
    load_trajectories,
    load_trajectory,
    replay,
    run_episode,
    save_trajectory,
    wilson_interval,
)
from labkit.agents.hf import HFCausalLMScorer
from labkit.agents.policies import (
    GenerativePolicy,
    LMPolicy,
    LSTMScorer,
    format_example,
    format_prompt,
    map_to_admissible,
)
from labkit.agents.recipes import RECIPES, Recipe, recipe_for
from labkit.agents.registry import ENV_NAMES, make_env
from labkit.agents.textworld_env import TextWorldEnv, game_file

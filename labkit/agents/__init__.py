"""The agent harness: environments, policies, episodes and evaluation, and behaviour cloning."""

from labkit.agents.baselines import ExpertPolicy, RandomPolicy
from labkit.agents.cloning import agent_config, clone_expert, examples, expert_episodes, load_agent
from labkit.agents.core import INFO_KEYS, Decision, Env, EnvError, InvalidActionError, Policy
from labkit.agents.harness import (
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
from labkit.agents.registry import ENV_NAMES, make_env
from labkit.agents.textworld_env import TextWorldEnv, game_file
from labkit.agents.tooluse import CalendarEnv, CustomerServiceEnv

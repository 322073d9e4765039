"""Drive the agent harness with a Hugging Face causal language model loaded from a local folder.

`HFCausalLMScorer` gives a transformers model the two methods a policy uses (`score`, `write`), so
`LMPolicy(HFCausalLMScorer.from_folder(path))` plays the same games as an LSTM. The prompt is run
once; its key/value cache is repeated for the N candidate actions, which are read in one padded
batch, as `labkit.likelihood.score_continuations` does with the LSTM's state.

transformers is an optional extra (`pip install "labkit[hf]"`): it is imported only here, when a
scorer is built. Nothing is ever downloaded: folders are opened with local_files_only=True.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from labkit.agents.policies import END_OF_ACTION, check_prompt


def require_transformers() -> Any:
    """Import transformers, or explain how to install it.

    Returns:
        The transformers module.
    Raises:
        ImportError: transformers is not installed (the message gives the install command).
    """
    try:
        import transformers
    except ImportError as e:
        raise ImportError(
            "the Hugging Face adapter needs the optional extra transformers, which is not "
            'installed; install it with `pip install "labkit[hf]"` (or `pip install transformers`).'
        ) from e
    return transformers


def _split_trailing_space(prompt: str) -> tuple[str, str]:
    """("...>", " ") from "...> ": subword tokenizers attach a space to the word after it, so the
    prompt's trailing space is moved to the front of every continuation."""
    body = prompt.rstrip(" ")
    return body, prompt[len(body) :]


class HFCausalLMScorer:
    """A transformers causal LM and its tokenizer, seen as a policy's Scorer."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        """Args:
            model: a transformers causal LM (e.g. from AutoModelForCausalLM).
            tokenizer: its tokenizer.
        Raises:
            ValueError: the tokenizer has more tokens than the model's embedding table.
        """
        rows = model.get_input_embeddings().num_embeddings
        if len(tokenizer) > rows:
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} tokens but the model's embedding table has "
                f"{rows} rows; load the tokenizer saved with this model (the same folder)."
            )
        self.model = model.eval()
        self.tokenizer = tokenizer

    @classmethod
    def from_folder(cls, path: str | Path, device: str = "cpu") -> HFCausalLMScorer:
        """Load AutoModelForCausalLM and AutoTokenizer from a local folder (never downloads).

        Raises:
            ImportError: transformers is not installed.
            FileNotFoundError: `path` is not a folder with a config.json.
        """
        transformers = require_transformers()
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{folder} is not a saved Hugging Face model (no config.json); save one with "
                "model.save_pretrained(folder) and tokenizer.save_pretrained(folder)."
            )
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
        return cls(model.to(device), tokenizer)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _context(self, prompt: str) -> list[int]:
        """The prompt's ids, after the bos token where the tokenizer has one (as the LSTM reads)."""
        bos = self.tokenizer.bos_token_id
        return ([bos] if bos is not None else []) + self._ids(prompt)

    @torch.no_grad()
    def score(self, prompt: str, continuations: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """log P(continuation + END_OF_ACTION | prompt) for every continuation, prompt run once.

        Returns:
            (N,) summed log-probabilities and (N,) token counts, on the CPU.
        Raises:
            ValueError: an empty prompt, or a continuation that encodes to no tokens.
        """
        check_prompt(prompt)
        body, space = _split_trailing_space(prompt)
        device = self.model.device
        context = torch.tensor([self._context(body)], device=device)  # (1, C)
        candidates = [self._ids(space + c + END_OF_ACTION) for c in continuations]
        lengths = torch.tensor([len(c) for c in candidates], dtype=torch.float32)  # (N,)
        if not candidates:
            return torch.empty(0), lengths
        if (lengths == 0).any():
            raise ValueError("a continuation encodes to no tokens; every action needs some text.")
        out = self.model(context, use_cache=True)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # (V,)
        n, longest = len(candidates), int(lengths.max())
        ids = torch.zeros((n, longest), dtype=torch.long)  # right-padded with id 0, never predicted
        for i, cand in enumerate(candidates):
            ids[i, : len(cand)] = torch.as_tensor(cand)
        ids = ids.to(device)
        total = first[ids[:, 0]]  # (N,)
        if longest > 1:
            cache = out.past_key_values
            cache.batch_repeat_interleave(n)  # the prompt's keys and values, once per candidate
            logits = self.model(ids[:, :-1], past_key_values=cache, use_cache=True).logits
            logp = torch.log_softmax(logits.float(), dim=-1)  # (N, L-1, V)
            logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (N, L-1)
            real = torch.arange(1, longest, device=device) < lengths.to(device)[:, None]
            total = total + (logp * real).sum(dim=1)
        return total.float().cpu(), lengths

    @torch.no_grad()
    def write(
        self,
        prompt: str,
        max_new_tokens: int = 40,
        greedy: bool = True,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> str:
        """The model's continuation of the prompt, cut at END_OF_ACTION (not included).

        Raises:
            ValueError: an empty prompt.
        """
        check_prompt(prompt)
        body, space = _split_trailing_space(prompt)
        context = torch.tensor([self._context(body)], device=self.model.device)  # (1, C)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        device = self.model.device
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # a seeded draw that leaves the global RNG alone
            torch.manual_seed(seed)
            out = self.model.generate(
                context,
                attention_mask=torch.ones_like(context),
                max_new_tokens=max_new_tokens,
                do_sample=not greedy,
                temperature=temperature if not greedy else None,
                top_k=None,
                top_p=None,
                pad_token_id=pad,
            )
        text = self.tokenizer.decode(out[0, context.size(1) :], skip_special_tokens=True)
        text = text[len(space) :] if text.startswith(space) else text
        return text.split(END_OF_ACTION)[0]

"""Checkpoints: atomic writes, safe loading, clear errors, rebuilding a model and its tokenizer."""

import pathlib

import pytest
import torch

from labkit.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from labkit.config import to_dict
from labkit.model import ADDED_LATER, LSTMLanguageModel, ModelConfig
from labkit.tokenizer import train_tokenizer

TEXT = "to be, or not to be: that is the question.\n"


def model_payload(tokenizer_json: str | None) -> tuple[LSTMLanguageModel, dict]:
    tokenizer = train_tokenizer("char", TEXT)
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        ModelConfig(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=8)
    )
    payload = {
        "model": model.state_dict(),
        "model_config": to_dict(model.config),
        "tokenizer": tokenizer.to_json() if tokenizer_json == "own" else tokenizer_json,
    }
    return model, payload


def test_round_trip_keeps_tensors_and_plain_values(tmp_path):
    path = tmp_path / "run" / "checkpoint.pt"
    payload = {
        "weights": torch.arange(6.0).view(2, 3),
        "rng": torch.get_rng_state(),
        "history": [{"step": 10, "val_loss": 1.5, "val_bpc": None}],
        "shape": (2, 3),
        "best": float("inf"),
    }
    save_checkpoint(path, payload)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"], payload["weights"])
    assert torch.equal(loaded["rng"], payload["rng"])
    assert loaded["history"] == payload["history"] and loaded["shape"] == (2, 3)
    assert loaded["format"] == "labkit-checkpoint"
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp file left


def test_a_new_checkpoint_is_renamed_into_place_never_written_over_the_old_one(tmp_path):
    # A reader that opened the old file (or a crash mid-write) must never see half of the new one:
    # the new checkpoint is another file, renamed over the old name, and the old one stays whole.
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.zeros(4096)})
    old_file = path.stat().st_ino
    with open(path, "rb") as reader:
        save_checkpoint(path, {"step": 2})
        assert torch.load(reader, weights_only=True)["step"] == 1
    assert path.stat().st_ino != old_file
    assert load_checkpoint(path)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_failed_write_leaves_the_old_checkpoint_whole(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})
    with pytest.raises(Exception):  # noqa: B017 - torch.save cannot pickle a lambda
        save_checkpoint(path, {"step": 2, "bad": lambda: None})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_checkpoint_names_the_file_and_the_way_out(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"weights": torch.randn(64, 64)})
    data = path.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"\x00junk" * 50, "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError, match="truncated, corrupt") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "best.pt" in str(err.value)


class Exploit:
    """Unpickling this calls Path.touch: the shape of any code-execution payload."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "labkit-checkpoint", "version": 1, "x": Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="holds objects other than tensors"):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the unsafe load that load_checkpoint never does ...
    assert marker.exists()  # ... would have run the payload's code


def test_files_that_are_not_labkit_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a labkit checkpoint"):
        load_checkpoint(plain)
    future = tmp_path / "future.pt"
    torch.save({"format": "labkit-checkpoint", "version": 99}, future)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(future)


def test_load_model_rebuilds_the_model_and_its_tokenizer(tmp_path):
    model, payload = model_payload("own")
    save_checkpoint(tmp_path / "best.pt", payload)
    loaded, tokenizer = load_model(tmp_path / "best.pt")
    assert not loaded.training
    assert loaded.config == model.config
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    )
    assert tokenizer.encode(TEXT) == train_tokenizer("char", TEXT).encode(TEXT)


def test_load_model_refuses_a_tokenizer_of_another_vocabulary(tmp_path):
    model, payload = model_payload("own")
    save_checkpoint(tmp_path / "best.pt", payload)
    other = train_tokenizer("char", TEXT + "XYZ")
    with pytest.raises(
        CheckpointError,
        match=rf"has {other.vocab_size} tokens.*trained with {model.config.vocab_size}",
    ):
        load_model(tmp_path / "best.pt", tokenizer=other)


def test_load_model_without_any_tokenizer_says_what_to_pass(tmp_path):
    _, payload = model_payload(None)
    save_checkpoint(tmp_path / "best.pt", payload)
    with pytest.raises(CheckpointError, match="holds no tokenizer"):
        load_model(tmp_path / "best.pt")
    _, tokenizer = load_model(tmp_path / "best.pt", tokenizer=train_tokenizer("char", TEXT))
    assert tokenizer.kind == "char"


def test_a_refused_pickled_object_gets_a_whole_message_without_torchs_unsafe_advice(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "labkit-checkpoint", "version": 1, "x": Exploit(tmp_path / "m")}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "(a pickled " in message and "could run code when loaded; labkit never does)" in message
    assert message.endswith("or train again.")
    assert "\x1b" not in message and "weights_only" not in message


def edit_model_config(payload, **changes):
    payload["model_config"] = {**payload["model_config"], **changes}


def drop_model_config_key(payload):
    del payload["model_config"]["hidden_dim"]


def drop_tensor(payload):
    payload["model"].pop(next(iter(payload["model"])))


def add_tensor(payload):
    payload["model"]["head.extra"] = torch.zeros(3)


def reshape_tensor(payload):
    name = next(iter(payload["model"]))
    payload["model"][name] = torch.zeros(2, 2)


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda p: p.pop("model"), "lacks 'model'"),
        (lambda p: p.pop("model_config"), "lacks 'model_config'"),
        (lambda p: p.update(model=[1, 2]), "'model' is not a dict of tensors"),
        (lambda p: p.update(model_config="big"), "'model_config' is a str, not a dict"),
        (drop_model_config_key, "'model_config' has missing hidden_dim"),
        (lambda p: edit_model_config(p, width=3), "'model_config' has unknown width"),
        (lambda p: edit_model_config(p, hidden_dim=-1), "unusable 'model_config'.*hidden_dim"),
        (lambda p: edit_model_config(p, hidden_dim="8"), "unusable 'model_config'"),
        (drop_tensor, "missing tensors embedding.weight"),
        (add_tensor, "extra tensors head.extra"),
        (reshape_tensor, r"embedding.weight is \(2, 2\), the model needs \(\d+, 8\)"),
        (lambda p: p.update(tokenizer='{"kind": "char"}'), "lacks the field 'tokens'"),
    ],
)
def test_a_hand_edited_checkpoint_raises_checkpoint_error_saying_what_is_wrong(
    tmp_path, edit, problem
):
    _, payload = model_payload("own")
    edit(payload)
    path = tmp_path / "best.pt"
    save_checkpoint(path, payload)
    with pytest.raises(CheckpointError, match=problem) as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_a_checkpoint_from_before_the_regularizers_loads_with_them_off(tmp_path):
    model, payload = model_payload("own")
    for name in ADDED_LATER:  # the settings added after such checkpoints were written
        del payload["model_config"][name]
    save_checkpoint(tmp_path / "best.pt", payload)
    loaded, _ = load_model(tmp_path / "best.pt")
    assert not loaded.config.locked_dropout and loaded.config.weight_drop == 0.0
    assert loaded.config.chrono_init == 0
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(loaded(ids)[0], model.eval()(ids)[0])


@pytest.mark.parametrize("payload", [[1, 2, 3], torch.zeros(3), "text"])
def test_a_payload_that_is_not_a_dict_is_refused(tmp_path, payload):
    path = tmp_path / "best.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="not a labkit checkpoint"):
        load_model(path)


def test_a_save_removes_temp_files_left_by_a_killed_writer_of_that_target(tmp_path):
    path = tmp_path / "checkpoint.pt"
    orphan = tmp_path / ".checkpoint.pt.99999.tmp"  # a process killed mid-write leaves this
    orphan.write_bytes(b"half a checkpoint")
    other = tmp_path / ".best.pt.99999.tmp"  # another target's: not this save's business
    other.write_bytes(b"half a checkpoint")
    save_checkpoint(path, {"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.pt.99999.tmp", "checkpoint.pt"]

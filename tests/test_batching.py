"""Streams for truncated BPTT: every target once, windows that tile the streams, sharding."""

from __future__ import annotations

import pytest
import torch

from labkit.batching import IGNORE_INDEX, batchify, num_windows, shard_rows, window


def random_ids(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(4, 50, (n,), generator=torch.Generator().manual_seed(seed))  # (N,)


@pytest.mark.parametrize(
    ("n", "batch_size", "bptt"), [(101, 4, 7), (100, 3, 5), (9, 8, 3), (2, 1, 1)]
)
def test_every_target_is_predicted_exactly_once_in_order(n, batch_size, bptt):
    ids = random_ids(n)
    inputs, targets = batchify(ids, batch_size)
    windows = [window(inputs, targets, i, bptt) for i in range(num_windows(inputs, bptt))]
    seen = torch.cat([t for _, t in windows], dim=1)  # (B, S): the windows side by side
    assert torch.equal(seen, targets)
    flat = seen.reshape(-1)  # stream b follows stream b-1 in the token sequence
    assert torch.equal(flat[flat != IGNORE_INDEX], ids[1:])
    assert int((flat == IGNORE_INDEX).sum()) == inputs.numel() - (n - 1)  # padding only at the end
    assert (flat[: n - 1] != IGNORE_INDEX).all()


def test_inputs_are_the_targets_shifted_by_one():
    ids = random_ids(50)
    inputs, targets = batchify(ids, 4)
    assert inputs.shape == targets.shape == (4, 13)
    flat_inputs, flat_targets = inputs.reshape(-1), targets.reshape(-1)  # (B * S,)
    assert torch.equal(flat_inputs[:49], ids[:-1])
    assert torch.equal(flat_inputs[1:49], flat_targets[:48])  # each target is the next input
    assert (flat_inputs[49:] == 0).all()  # padded inputs are pad_id


def test_windows_tile_the_streams_and_the_last_may_be_shorter():
    inputs, targets = batchify(random_ids(61), 3)  # S = 20
    assert num_windows(inputs, 6) == 4
    widths = [window(inputs, targets, i, 6)[0].size(1) for i in range(4)]
    assert widths == [6, 6, 6, 2]
    x, y = window(inputs, targets, 1, 6)
    assert x.data_ptr() == inputs[:, 6:].data_ptr()  # views, no copies
    assert torch.equal(y, targets[:, 6:12])


def test_shard_rows_split_the_streams_evenly_over_ranks():
    inputs, _ = batchify(random_ids(97), 6)
    shards = [shard_rows(inputs, rank, 3) for rank in range(3)]
    assert [s.size(0) for s in shards] == [2, 2, 2]
    assert torch.equal(torch.cat(shards), inputs)
    with pytest.raises(ValueError, match="multiple of 4"):
        shard_rows(inputs, 0, 4)


@pytest.mark.parametrize("ids", [torch.tensor([], dtype=torch.long), torch.tensor([5])])
def test_a_stream_with_nothing_to_predict_is_refused(ids):
    with pytest.raises(ValueError, match="at least two tokens"):
        batchify(ids, 1)


def test_fewer_predictions_than_streams_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="smaller --batch_size"):
        batchify(random_ids(5), 8)


def test_bad_shape_and_batch_size_are_refused():
    with pytest.raises(ValueError, match="1-D"):
        batchify(random_ids(20).view(4, 5), 2)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        batchify(random_ids(20), 0)


def test_a_mask_keeps_the_inputs_and_drops_the_unmarked_targets():
    ids = torch.arange(1, 11)
    mask = torch.tensor([i % 3 == 0 for i in range(10)])
    inputs, targets = batchify(ids, 3, mask=mask)
    plain_inputs, plain_targets = batchify(ids, 3)
    assert torch.equal(inputs, plain_inputs)  # every token is still read
    kept = targets[targets != IGNORE_INDEX]
    assert kept.tolist() == [4, 7, 10]  # the marked tokens after the first, once each
    assert torch.equal(plain_targets[targets != IGNORE_INDEX], kept)


def test_a_mask_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="one mask entry per token"):
        batchify(torch.arange(10), 2, mask=torch.ones(9, dtype=torch.bool))

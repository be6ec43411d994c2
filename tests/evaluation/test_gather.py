"""``gather_embeddings``: de-duplication, ordering and completeness; a real 2-process gloo run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from sbir_bench.evaluation.engine import evaluate, gather_embeddings

N_QUERIES, N_GALLERY, DIM = 23, 37, 4  # odd sizes: DistributedSampler pads its shards by repetition


def _dataset(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, DIM, generator=generator), torch.randint(0, 3, (n,), generator=generator)


def test_duplicates_are_dropped_and_rows_sorted_by_index():
    embeddings, labels = _dataset(6, 0)
    indices = torch.tensor([4, 1, 0, 5, 2, 3, 4, 1])  # two padding repeats at the end
    rows = torch.cat([embeddings[[4, 1, 0, 5, 2, 3]], embeddings[[4, 1]] + 100.0])
    rows_labels = torch.cat([labels[[4, 1, 0, 5, 2, 3]], labels[[4, 1]]])
    gathered, gathered_labels = gather_embeddings(rows, rows_labels, indices)
    assert torch.equal(gathered, embeddings)  # first occurrence kept, not the +100 repeats
    assert torch.equal(gathered_labels, labels)


def test_a_missing_index_is_an_error_that_names_it():
    embeddings, labels = _dataset(5, 1)
    with pytest.raises(RuntimeError, match=r"1 missing \(first: \[2\]\)"):
        gather_embeddings(embeddings[[0, 1, 3, 4]], labels[[0, 1, 3, 4]], torch.tensor([0, 1, 3, 4]))


def test_missing_trailing_indices_need_the_expected_size():
    embeddings, labels = _dataset(5, 2)
    gathered, _ = gather_embeddings(embeddings[:4], labels[:4], torch.arange(4))
    assert len(gathered) == 4  # nothing can tell that item 4 existed...
    with pytest.raises(RuntimeError, match=r"1 missing \(first: \[4\]\)"):
        gather_embeddings(embeddings[:4], labels[:4], torch.arange(4), n_expected=5)  # ...unless told


@pytest.mark.parametrize(
    ("indices", "labels", "message"),
    [
        (torch.tensor([0, -1, 1]), torch.tensor([0, 0, 0]), "negative"),
        (torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]), "different labels"),
        (torch.tensor([0, 1, 7]), torch.tensor([0, 1, 2]), "missing"),
    ],
)
def test_inconsistent_indices_are_errors(indices, labels, message):
    with pytest.raises(RuntimeError, match=message):
        gather_embeddings(torch.zeros(3, 2), labels, indices)


def test_length_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match="3 embeddings, 2 labels"):
        gather_embeddings(torch.zeros(3, 2), torch.zeros(2), torch.arange(3))


def _rank_worker(rank: int, world_size: int, rendezvous: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world_size)
    try:
        gathered = {}
        for name, n, seed in (("query", N_QUERIES, 0), ("gallery", N_GALLERY, 1)):
            embeddings, labels = _dataset(n, seed)
            # padded like DistributedSampler (shuffled; the last shard repeats samples)
            shard = torch.tensor(list(DistributedSampler(range(n), world_size, rank, shuffle=True, seed=3)))
            gathered[name] = gather_embeddings(embeddings[shard], labels[shard], shard)
        # uneven shards (no padding): rank 0 holds 12 rows of the queries, rank 1 the other 11
        embeddings, labels = _dataset(N_QUERIES, 0)
        uneven = torch.arange(N_QUERIES)[:12] if rank == 0 else torch.arange(N_QUERIES)[12:]
        codes = embeddings[uneven] > 0  # bool: gathered through uint8
        uneven_codes, _ = gather_embeddings(codes, labels[uneven], uneven)
        metrics = evaluate(*gathered["query"], *gathered["gallery"], metrics=("p@5", "map@10", "map@all"))
        payload = {"metrics": metrics, "uneven_ok": bool(torch.equal(uneven_codes, embeddings > 0))}
        payload["query_ok"] = bool(torch.equal(gathered["query"][0], _dataset(N_QUERIES, 0)[0]))
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(payload))
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_two_process_gloo_gather_gives_the_single_process_metrics(tmp_path):
    mp.spawn(_rank_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", str(tmp_path)), nprocs=2, join=True)
    single = evaluate(*_dataset(N_QUERIES, 0), *_dataset(N_GALLERY, 1), metrics=("p@5", "map@10", "map@all"))
    for rank in (0, 1):
        payload = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert payload["query_ok"] and payload["uneven_ok"]
        assert payload["metrics"] == single

"""The efficiency measurements a record carries: bytes per gallery item, query time, hardware named."""

from __future__ import annotations

import torch

from sbir_bench.efficiency import embedding_bytes, hardware_description, measure
from sbir_bench.leaderboard.record import environment_info


def test_embedding_bytes_from_shape_and_dtype():
    assert embedding_bytes(torch.zeros(5, 64), "cosine") == 256  # 64 float32 values x 4 bytes
    assert embedding_bytes(torch.zeros(5, 64, dtype=torch.float16), "euclidean") == 128  # x 2 bytes
    assert embedding_bytes(torch.ones(5, 64), "hamming") == 8  # 64 bits packed, whatever the dtype
    assert embedding_bytes(torch.zeros(5, 3, 16), "cosine") == 192  # multi-vector: 3 x 16 x 4


def test_measure_times_the_engine_on_the_test_embeddings():
    generator = torch.Generator().manual_seed(0)
    queries, gallery = torch.randn(50, 8, generator=generator), torch.randn(300, 8, generator=generator)
    embeddings = {"query": (queries, torch.arange(50) % 5), "gallery": (gallery, torch.arange(300) % 5)}
    measured = measure(embeddings, distance="cosine", metrics=["map@200"])
    assert measured["embedding_bytes"] == 32 and (measured["queries"], measured["gallery"]) == (50, 300)
    assert 0 < measured["query_seconds_per_1k"] < 60
    assert measure({}, distance="cosine", metrics=["map@200"]) == {}, "no test embeddings: nothing measured"


def test_the_hardware_is_named():
    _, _, hardware = environment_info()
    assert hardware["cpu_model"] and hardware["torch_threads"] == torch.get_num_threads()
    described = hardware_description(hardware, "CPUAccelerator")
    assert described.startswith(hardware["cpu_model"]) and "torch thread" in described
    gpu = {"cpu_model": "X", "torch_threads": 2, "cuda_devices": ["G", "G"]}
    assert hardware_description(gpu, "CUDAAccelerator") == "X, 2 torch threads, GPU G"
    assert hardware_description(gpu, "CPUAccelerator") == "X, 2 torch threads", "GPU not used: not named"
    old = {"cpu_count": 2, "machine": "x86_64", "cuda_devices": []}  # a record of older code
    assert hardware_description(old) == "x86_64 with 2 CPUs (CPU model and threads not recorded)"

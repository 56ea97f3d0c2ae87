"""Sequence parallel (Ulysses, ring) and CFG parallel on gloo: several CPU processes equal one process."""

from __future__ import annotations

import pytest
import torch
from parallel_support import compare_worker, killed_rank_worker, tiny_model
from safetensors.torch import load_file

from cosmos3.runtime.parallel import (
    ParallelConfig,
    ParallelConfigError,
    attention_lse,
    init_parallel,
    kv_heads_per_rank,
    merge_partial,
)
from cosmos3.runtime.parallel.local import free_port, run_local

TIMEOUT_S = 60.0


def _run(world: int, jobs: list, tmp_path) -> dict:
    init = f"tcp://127.0.0.1:{free_port()}"
    codes = run_local(compare_worker, world, (init, jobs, str(tmp_path), TIMEOUT_S), timeout_s=300)
    errors = [p.read_text() for p in sorted(tmp_path.glob("*.error"))]
    assert not errors, errors[0]
    assert codes == [0] * world, codes
    results = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(world)]
    for layout, case, cfg_batch in jobs:
        key = f"{layout}|{case}|{int(cfg_batch)}"
        reference = results[0]["ref|" + key]
        for rank, result in enumerate(results):
            diff = (result[key] - reference).abs().max().item()
            assert diff <= 1e-5, f"{key} rank {rank}: max abs diff {diff:.3g}"
            assert torch.equal(result[key], results[0][key]), f"{key}: ranks disagree"
    return results


def test_two_ranks_ulysses_cfg_ring(tmp_path):
    jobs = [
        ("ulysses=2", "t2v", False),
        ("ulysses=2", "i2v", False),
        ("ulysses=2", "t2i", True),  # batched CFG: padded prompts through the Ulysses attention
        ("cfg=2", "t2v", False),
        ("cfg=2", "i2v", False),
        ("cfg=2", "t2i", False),
        ("ring=2", "t2v", True),  # ring with left-padded prompts
        ("ring=2", "i2v", False),
        ("ring=2", "t2i", False),
        ("ulysses=2", "t2v_sound", False),  # sound tokens ride along in the sharded stream
        ("cfg=2", "t2v_sound", False),
        ("ring=2", "t2v_sound", True),
    ]
    _run(2, jobs, tmp_path)


def test_four_ranks_combined_layouts(tmp_path):
    jobs = [
        ("ulysses=2,cfg=2", "t2v", False),
        ("ulysses=2,cfg=2", "i2v", False),
        ("ulysses=2,cfg=2", "t2i", False),
        ("ulysses=4", "t2v", False),  # 2 K/V heads replicated over 4 ranks
        ("ulysses=2,ring=2", "t2v", True),
        ("ring=2,cfg=2", "t2i", False),
        ("ring=4", "i2v", False),
    ]
    _run(4, jobs, tmp_path)


def test_killed_rank_fails_the_others_quickly(tmp_path):
    init = f"tcp://127.0.0.1:{free_port()}"
    timeout = 10.0
    codes = run_local(killed_rank_worker, 2, (init, str(tmp_path), timeout), timeout_s=120)
    assert codes[1] == 3
    kind, seconds, message = (tmp_path / "rank0.result").read_text().split("|", 2)
    assert kind == "ParallelError", message
    assert "rank 0 of 2" in message and "timeout" in message
    assert float(seconds) < timeout + 20


# ---------------------------------------------------------------------------------------------- single process


def test_parse_and_check_name_the_numbers():
    assert ParallelConfig.parse("ulysses=2, cfg=2") == ParallelConfig(ulysses=2, cfg=2)
    assert ParallelConfig.parse("ring=3").world_size == 3
    for bad in ("ulysses=2,ulysses=2", "tp=2", "ulysses", "ring=x", "cfg=3", "ulysses=0"):
        with pytest.raises(ParallelConfigError):
            ParallelConfig.parse(bad)
    with pytest.raises(ParallelConfigError, match=r"ulysses=3 does not divide the 32 attention heads"):
        ParallelConfig(ulysses=3).check(num_heads=32, num_kv_heads=8)
    with pytest.raises(ParallelConfigError, match=r"neither split nor replicate the 6 key/value heads"):
        ParallelConfig(ulysses=4).check(num_heads=24, num_kv_heads=6)
    with pytest.raises(ParallelConfigError, match=r"needs 4 processes .* the world has 2"):
        ParallelConfig(ulysses=2, cfg=2).check(world_size=2)
    with pytest.raises(ParallelConfigError, match=r"needs 8 GPUs, 2 visible"):
        ParallelConfig(ring=8).check(devices=2)
    ParallelConfig(ring=3).check(num_heads=32, num_kv_heads=8, world_size=3)  # ring takes any degree
    assert kv_heads_per_rank(8, 2) == (1, 4) and kv_heads_per_rank(8, 16) == (2, 1)


def test_bad_layout_fails_before_any_process_group():
    import torch.distributed as dist

    with pytest.raises(ParallelConfigError, match="needs 2 processes"):
        init_parallel(ParallelConfig(ulysses=2), rank=0, world_size=1, device="cpu", init_method="tcp://127.0.0.1:1")
    assert not dist.is_initialized()


def test_lse_blocks_merge_to_full_attention():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 7, 16, generator=gen) for _ in range(3))
    k, v = k[:, :2], v[:, :2]  # GQA 4:2
    full, full_lse = attention_lse(q, k, v)
    out = lse = None
    for start, stop in ((0, 3), (3, 5), (5, 7)):
        out, lse = merge_partial(out, lse, *attention_lse(q, k[:, :, start:stop], v[:, :, start:stop]))
    assert (out - full).abs().max() < 1e-5 and (lse - full_lse).abs().max() < 1e-5
    reference = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    )
    assert (full - reference).abs().max() < 1e-5


def test_model_without_parallel_is_unchanged():
    assert tiny_model().sequence_parallel is None


@pytest.mark.slow
def test_cli_parallel_under_torchrun_env_only_rank0_writes(tmp_path):
    import numpy as np
    from parallel_support import cli_worker
    from tiny_models import demo_checkpoint

    from cosmos3.cli import main

    checkpoint = demo_checkpoint()
    common = ["generate", "--checkpoint", str(checkpoint), "--prompt", "a red ball rolls", "--frames", "5",
              "--height", "48", "--width", "48", "--steps", "2", "--guidance", "3", "--no-strict-sizes",
              "--device", "cpu", "--dtype", "fp32"]
    single = tmp_path / "single.npy"
    assert main([*common, "--output", str(single)]) == 0
    out_dir = tmp_path / "ranks"
    out_dir.mkdir()
    parallel = out_dir / "parallel.npy"
    argv = [*common, "--output", str(parallel), "--parallel", "ulysses=2", "--parallel-timeout", "60"]
    codes = run_local(cli_worker, 2, (free_port(), argv, str(out_dir)), timeout_s=300)
    assert codes == [0, 0]
    assert [(out_dir / f"rank{r}.code").read_text() for r in range(2)] == ["0", "0"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["parallel.npy", "rank0.code", "rank1.code"]
    assert np.abs(np.load(parallel) - np.load(single)).max() <= 1e-5


def test_cli_rejects_a_layout_the_world_cannot_take(tmp_path, capsys):
    from tiny_models import demo_checkpoint

    from cosmos3.cli import main

    argv = ["generate", "--checkpoint", str(demo_checkpoint()), "--prompt", "a", "--frames", "1", "--height", "48",
            "--width", "48", "--output", str(tmp_path / "x.png"), "--device", "cpu", "--parallel", "ulysses=3"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ulysses=3 does not divide the 4 attention heads" in err and "needs 3 processes" in err
    assert not (tmp_path / "x.png").exists()

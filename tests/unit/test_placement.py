"""Multi-GPU replica placement without Ray: bundles, strategy, sizing and the errors users read.

The same placement runs on a real multi-node Ray cluster in tests/integration/test_multinode.py.
"""

from __future__ import annotations

import pytest

from factory.config import load_config
from factory.engines import ENGINES
from factory.errors import UserError
from factory.runner.backends.cluster import gpu_replica_count
from factory.runner.backends.placement import Placement, not_placed_message, placement_for


def test_one_gpu_replicas_need_no_group() -> None:
    assert placement_for(1, 1) is None


def test_tensor_parallel_stays_on_one_node() -> None:
    p = placement_for(4, 1)
    assert p is not None and p.world_size == 4
    assert p.strategy == "STRICT_PACK"
    # Bundle 0 also holds the replica actor's CPU; vLLM's workers take one GPU each, no CPU.
    assert p.bundles == [{"GPU": 1, "CPU": 1}, {"GPU": 1}, {"GPU": 1}, {"GPU": 1}]


def test_pipeline_stages_may_span_nodes() -> None:
    p = placement_for(2, 2)
    assert p is not None and p.strategy == "PACK" and len(p.bundles) == 4
    assert p.describe() == {"strategy": "PACK", "bundles": p.bundles, "world_size": 4,
                            "tensor_parallel_size": 2, "pipeline_parallel_size": 2}
    assert placement_for(1, 3).strategy == "PACK"  # type: ignore[union-attr]


@pytest.mark.parametrize("replicas,tp,pp,node_gpus,expected", [
    ("auto", 1, 1, [0, 2, 2], 4),
    ("auto", 2, 1, [0, 2, 2], 2),
    ("auto", 2, 2, [0, 2, 2], 1),  # a pipeline replica spans the two nodes
    ("auto", 2, 1, [3, 3], 2),  # TP groups are counted per node: not 6 // 2 = 3
    ("auto", 2, 2, [3, 3], 1),
    (1, 8, 1, [8, 8], 1),
])
def test_replica_count(replicas: int | str, tp: int, pp: int, node_gpus: list[int], expected: int) -> None:
    assert gpu_replica_count(replicas, tp, pp, node_gpus) == expected


def test_tensor_parallel_larger_than_a_node_says_what_to_change() -> None:
    with pytest.raises(UserError) as e:
        gpu_replica_count("auto", 4, 1, [0, 2, 2])
    msg = str(e.value)
    assert "tensor_parallel_size=4 x pipeline_parallel_size=1" in msg
    assert "[0, 2, 2]" in msg  # what the cluster has
    assert "lower teacher.tensor_parallel_size to 2 or less" in msg
    assert "pipeline_parallel_size > 1" in msg  # the other way out: stages across nodes


def test_too_many_replicas_says_how_many_fit() -> None:
    with pytest.raises(UserError, match=r"3 replicas x 2 GPU.*hold 2; set teacher.replicas to 2 or less"):
        gpu_replica_count(3, 2, 1, [2, 2])
    with pytest.raises(UserError, match=r"does not fit: .*\[2, 2\] \(4 in all\)"):
        gpu_replica_count("auto", 4, 2, [2, 2])


def test_unplaced_group_message_names_the_nodes_and_the_fix() -> None:
    nodes = [("10.0.0.1 aaaa", {"GPU": 8, "CPU": 32}, {"GPU": 2, "CPU": 30}),
             ("10.0.0.2 bbbb", {"CPU": 4}, {"CPU": 4})]
    msg = not_placed_message(1, 2, Placement(4, 1), nodes, 600)
    assert msg.startswith("1 of 2 engine replica placement group(s) could not be placed within 600s")
    assert "4 free GPUs on one node" in msg and "STRICT_PACK" in msg
    assert "10.0.0.1 aaaa: 2/8 GPU, 30/32 CPU free" in msg and "10.0.0.2 bbbb: 0/0 GPU" in msg
    assert "run.placement_timeout_s" in msg and "teacher.pipeline_parallel_size > 1" in msg
    assert "PACK" in not_placed_message(1, 1, Placement(2, 2), nodes, 5)


def test_which_engines_take_gpus() -> None:
    assert ENGINES.get("vllm").needs_accelerator({}) is True
    assert ENGINES.get("openai").needs_accelerator({"engine_kwargs": {"base_url": "http://x/v1"}}) is False
    scripted = ENGINES.get("scripted")
    assert scripted.needs_accelerator({"engine_kwargs": {}}) is False
    assert scripted.needs_accelerator({"engine_kwargs": {"gpu": True}}) is True  # stands in for vLLM


def test_placement_timeout_does_not_change_the_fingerprint() -> None:
    # How long to wait for GPUs decides nothing about the data: a rerun with another timeout resumes.
    base = {"source": {"builtin": "arithmetic"}, "teacher": {"engine": "scripted"}}
    a = load_config(None, data=base)
    b = load_config(None, data={**base, "run": {"placement_timeout_s": 5}})
    assert b.run.placement_timeout_s == 5 and a.fingerprint() == b.fingerprint()

"""Holds a local Ray, started as `factory generate` starts one, idle beside another benchmark.

    python -m benchmarks.idle_ray --config CONFIG   # prints "ready", then holds until stdin closes

The control for the saturation benchmark: raw vLLM measured with this beside it shows what Ray's
own daemons (GCS, raylet, log monitor, dashboard agent) and one idle actor cost the engine on
this machine, apart from anything factory does. On a GPU node they cost the engine nothing; on a
2-core CPU machine they compete with vLLM's two compute threads.
"""

from __future__ import annotations

import argparse
import sys



class Idle:
    async def ping(self) -> int:
        return 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    args = ap.parse_args()

    from factory.config import load_config
    from factory.runner.backends.cluster import connect

    ray = connect(load_config(args.config, []))
    actor = ray.remote(Idle).options(num_cpus=1).remote()  # a replica's place, without an engine
    ray.get(actor.ping.remote())
    print("ready", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Side-by-side step times of nfschwinger and the paper's own code (neumc).

    python3 tests/refbench.py [-L 8,16] [-estimators reinforce,rt] [-steps 3] [-nfschwinger ./nfschwinger]

Times, in one run on one machine, a gradient step of the paper's flow (48
layers of [64, 64], 9 knots, dilations 1, 2, 3, float32, batch = micro-batch
= 64, beta = 2, kappa = 0.276) in the reference code (its REINFORCE or RT
gradient estimator and an Adam step, torch threads = the machine's cores,
the median of -steps steps after one) and in nfschwinger (`nfschwinger bench
-json`, oneDNN float32, the median of -steps), each row's two codes back to
back, and prints the table with the speed-ups. The reference code must be importable: `import neumc` (the
paper's repository nmcmc/neumc, its package under neumc/src on PYTHONPATH)
and PyTorch (Debian's python3-torch). make bench runs this when it is.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def reference_step(L, estimator, steps, threads):
    import torch
    import neumc
    from neumc.nf.u1_model_asm import assemble_model_from_dict

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    cfg = {"n_layers": 48, "masking": "2x1", "coupling": "cs",
           "nn": {"hidden_channels": [64, 64], "kernel_size": 3, "dilation": [1, 2, 3]},
           "n_knots": 9, "float_dtype": torch.float32, "lattice_shape": (L, L)}
    model = assemble_model_from_dict(cfg, device="cpu", verbose=0)
    action = neumc.physics.schwinger.QEDAction(2.0, 0.276)
    name = {"reinforce": "REINFORCEEstimator", "rt": "RTEstimator"}[estimator]
    est = getattr(neumc.training.gradient_estimator, name)(model["prior"], model["layers"], action, False)
    opt = torch.optim.Adam(model["layers"].parameters(), lr=1e-4)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        est.step(batch_size=64, n_batches=1)
        opt.step()
        if i > 0:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ours(binary, Ls, estimators, steps):
    out = subprocess.run([binary, "bench", "-json", "-L", ",".join(map(str, Ls)), "-estimators", ",".join(estimators),
                          "-batch", "64", "-micro-batch", "64", "-layers", "48", "-steps", str(steps),
                          "-conv-engine", "dnnl", "-conv-precision", "float32", "-action=false"],
                         check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        r = json.loads(line)
        if r.get("kind") == "step" and r.get("form") != "four-pass":
            rows[(r["L"], r["estimator"])] = r["step_seconds"]
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-L", default="8,16")
    p.add_argument("-estimators", default="reinforce,rt")
    p.add_argument("-steps", type=int, default=3)
    p.add_argument("-nfschwinger", default="./nfschwinger")
    a = p.parse_args()
    try:
        import neumc  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        print(f"refbench: the reference code is not importable ({e}); see the docstring", file=sys.stderr)
        return 2
    Ls = [int(x) for x in a.L.split(",")]
    ests = a.estimators.split(",")
    print(f"Seconds per gradient step, 48 layers of [64, 64], batch 64, float32, {os.cpu_count()} cores of {cpu_name()}:\n")
    print("| L | estimator | reference code | nfschwinger | speed-up |")
    print("|---|---|---|---|---|")
    for L in Ls:
        for e in ests:
            # Each row's two codes run back to back, so that a shared
            # machine's load drifts as little as possible between them.
            m = ours(a.nfschwinger, [L], [e], a.steps)[(L, e)]
            ref = reference_step(L, e, a.steps, os.cpu_count())
            print(f"| {L} | {e} | {ref:.3f} | {m:.3f} | {ref / m:.2f}× |", flush=True)
    return 0


def cpu_name():
    """The model name with its CPU family and model numbers (on AMD the
    name alone does not tell Zen 4, family 25, from Zen 5, family 26)."""
    info = {}
    for line in open("/proc/cpuinfo"):
        k, _, v = line.partition(":")
        info.setdefault(k.strip(), v.strip())
        if not line.strip():
            break
    return f"{info.get('model name', '?')} (CPU family {info.get('cpu family', '?')}, model {info.get('model', '?')})"


if __name__ == "__main__":
    sys.exit(main())

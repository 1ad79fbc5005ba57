"""Where MMPose's training step (bf16 autocast, channels_last, batch B) spends its device time, by
kernel kind (the kinds of ``train_speed_jax.py``, so the two breakdowns compare) and by the 15
largest ops. Runs in an environment with PyTorch and MMPose 1.3.2 and the GPU harness' builder
(``mmpose_models.py`` on ``PYTHONPATH``); ``DEV=cpu`` profiles CPU time instead. See
``benchmarks/gpu_run.sh``."""
import collections
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mmpose_models import build
from train_speed_jax import kernel_kind

DEV = os.environ.get("DEV", "cuda")
B = int(os.environ.get("B", "64"))
name = os.environ.get("PMODEL", "RSN50_256x192")
torch.backends.cudnn.benchmark = True
net, (h, w), _ = build(name)
net = net.to(DEV).to(memory_format=torch.channels_last).train()
opt = torch.optim.Adam(net.parameters(), 5e-4)
x = torch.randn(B, 3, h, w, device=DEV).to(memory_format=torch.channels_last)
def flat(o):
    return [t for i in o for t in flat(i)] if isinstance(o, (list, tuple)) else [o]
with torch.no_grad():
    tg = [torch.zeros_like(t, dtype=torch.float32) for t in flat(net(x))]
def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=DEV, dtype=torch.bfloat16):
        loss = sum(((a.float() - b) ** 2).mean() for a, b in zip(flat(net(x)), tg))
    loss.backward()
    opt.step()
for _ in range(5):
    step()
if DEV == "cuda":
    torch.cuda.synchronize()
acts = [torch.profiler.ProfilerActivity.CPU]
if DEV == "cuda":
    acts.append(torch.profiler.ProfilerActivity.CUDA)
with torch.profiler.profile(activities=acts) as prof:
    for _ in range(3):
        step()
    if DEV == "cuda":
        torch.cuda.synchronize()
per_op = collections.defaultdict(float)
for e in prof.events():
    t = getattr(e, "device_time", 0) if DEV == "cuda" else e.self_cpu_time_total
    if DEV == "cuda" and getattr(e, "device_type", None) != torch.autograd.DeviceType.CUDA:
        continue
    per_op[e.name] += t
per_kind = collections.defaultdict(float)
for k, v in per_op.items():
    per_kind[kernel_kind(k)] += v
total = sum(per_kind.values()) or 1
rec = {"impl": "mmpose-torch", "model": name, "batch": B,
       "device_ms_per_step": round(total / 1e3 / 3, 2),
       "kinds_pct": {k: round(100 * v / total, 1)
                     for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1])},
       "top_ops_ms": {k[:90]: round(v / 1e3 / 3, 2)
                      for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])[:15]}}
print(json.dumps(rec), flush=True)
with open(os.path.join(os.environ.get("OUT", "/tmp"), "torch_profile.jsonl"), "a") as f:
    f.write(json.dumps(rec) + "\n")

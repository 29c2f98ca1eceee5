#!/usr/bin/env python3
"""Training throughput (images/s) of keen vs PyTorch on the CPU.

For each round and model it runs `keen bench-train` (a subprocess printing one
line of JSON) and the same model in PyTorch, alternating which goes first, then
reports the median over rounds. Warm-up steps are never timed. Input is one
random batch [B,1,28,28] with random labels in 0..10; Adam lr 1e-3, cross-entropy.
"""

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "train_throughput.json"
TORCH_DIR = Path(os.environ.get("KEEN_BENCH_DIR", Path.home() / ".cache" / "keen-bench")) / "torch"
DEFAULT_MODELS = "cnn-small,vit-tiny"


def default_keen_bin() -> Path:
    """Where scripts/env.sh builds keen ($CARGO_TARGET_DIR, else ~/.cache/keen/target)."""
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache" / "keen" / "target")
    candidate = Path(target) / "release" / "keen"
    return candidate if candidate.exists() else REPO / "target" / "release" / "keen"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated: cnn-small, vit-tiny, resnet20")
    p.add_argument("--steps", type=int, default=30, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads / RAYON_NUM_THREADS for keen")
    p.add_argument("--keen-bin", type=Path, default=default_keen_bin())
    p.add_argument("--keen-timeout", type=float, default=1800, help="seconds per keen run")
    p.add_argument("--skip-keen", action="store_true")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--json-out", type=Path, default=RESULTS)
    args = p.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    return args


def import_torch():
    """Return the torch module, looking in the bench cache folder too, or None."""
    try:
        import torch
    except ImportError:
        if not TORCH_DIR.is_dir():
            return None
        sys.path.insert(0, str(TORCH_DIR))
        try:
            import torch
        except ImportError:
            return None
    return torch


def run_torch(torch, model_name, args):
    from torch_models import MODELS

    if model_name not in MODELS:
        raise ValueError(f"no PyTorch model {model_name!r} (known: {', '.join(MODELS)})")
    torch.manual_seed(0)
    model = MODELS[model_name]()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    loss.item()
    seconds = time.perf_counter() - start
    return args.steps * args.batch_size / seconds


def run_keen(model_name, args):
    cmd = [str(args.keen_bin), "bench-train", "--model", model_name, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--json"]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.keen_timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed nothing on stdout")
    result = json.loads(lines[-1])
    expected = {"model": model_name, "steps": args.steps, "batch_size": args.batch_size}
    for key, value in expected.items():
        if key in result and result[key] != value:
            raise RuntimeError(f"keen reported {key}={result[key]!r}, expected {value!r}")
    return float(result["images_per_sec"])


def summarize(samples):
    return {"images_per_sec": samples, "median": statistics.median(samples) if samples else None}


def cpu_busy(seconds=1.0):
    """Fraction of all cores busy over `seconds` (from /proc/stat), or None off Linux."""
    def sample():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(1 - (idle1 - idle0) / max(total1 - total0, 1), 3)


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmt(value, spec):
    width = spec.split(".")[0]
    return format("n/a", f">{width}") if value is None else format(value, spec)


def main():
    args = parse_args()
    torch = None
    if not args.skip_torch:
        torch = import_torch()
        if torch is None:
            print("PyTorch is not importable: install it with `bash bench/setup_pytorch.sh` "
                  f"(into {TORCH_DIR}); reporting keen only.", file=sys.stderr)
        else:
            torch.set_num_threads(args.threads)
    use_keen = not args.skip_keen
    if use_keen and not args.keen_bin.exists():
        print(f"keen binary {args.keen_bin} not found (build it with `cargo build --release` "
              "or pass --keen-bin); reporting PyTorch only.", file=sys.stderr)
        use_keen = False
    if torch is None and not use_keen:
        sys.exit("nothing to run: neither keen nor PyTorch is available")

    busy_start = cpu_busy()
    if busy_start is not None and busy_start > 0.1:
        print(f"warning: the CPU is {busy_start:.0%} busy before starting; other processes "
              "compete for the cores, so numbers will be low and noisy", file=sys.stderr)

    runners = []
    if use_keen:
        runners.append(("keen", run_keen))
    if torch is not None:
        runners.append(("pytorch", functools.partial(run_torch, torch)))
    samples = {(m, fw): [] for m in args.models for fw in ("keen", "pytorch")}
    errors = {}
    for r in range(args.rounds):
        for model in args.models:
            for fw, runner in runners if r % 2 == 0 else runners[::-1]:
                if (model, fw) in errors:
                    continue
                try:
                    ips = runner(model, args)
                except Exception as e:  # one broken model/framework must not stop the rest
                    errors[(model, fw)] = str(e)
                    print(f"round {r + 1}: {fw} {model} failed: {e}", file=sys.stderr)
                    continue
                samples[(model, fw)].append(ips)
                print(f"round {r + 1}/{args.rounds}  {fw:<8} {model:<10} {ips:9.1f} img/s", file=sys.stderr)

    rows = []
    for model in args.models:
        keen, pt = summarize(samples[(model, "keen")]), summarize(samples[(model, "pytorch")])
        ratio = keen["median"] / pt["median"] if keen["median"] and pt["median"] else None
        rows.append({"model": model, "keen": keen, "pytorch": pt, "ratio_keen_over_pytorch": ratio,
                     "errors": {fw: errors[(m, fw)] for (m, fw) in errors if m == model}})

    header = f"{'model':<10} {'keen img/s':>11} {'PyTorch img/s':>14} {'keen/PyTorch':>13}"
    print(f"\nmedian of {args.rounds} rounds, {args.steps} steps (+{args.warmup} warm-up), "
          f"batch {args.batch_size}, {args.threads} threads")
    print(header + "\n" + "-" * len(header))
    for row in rows:
        print(f"{row['model']:<10} {fmt(row['keen']['median'], '11.1f')} "
              f"{fmt(row['pytorch']['median'], '14.1f')} {fmt(row['ratio_keen_over_pytorch'], '13.3f')}")

    report = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cpu_count": os.cpu_count(), "cpu": cpu_name(),
                    "python": platform.python_version(),
                    "cpu_busy_before": busy_start, "cpu_busy_after": cpu_busy()},
        "torch": None if torch is None else {"version": torch.__version__,
                                             "mkldnn": torch.backends.mkldnn.is_available(),
                                             "threads": torch.get_num_threads()},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": rows,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()

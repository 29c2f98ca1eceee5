#!/usr/bin/env python3
"""Inference: keen-runtime vs ONNX Runtime vs tract, on one exported student, in one run.

Exports the model four ways (keen-runtime INT8 and fp32, then ONNX QDQ INT8 and ONNX fp32 from
those very files), checks the ONNX files with `onnx.checker`, times every engine at batch 1
(p50 latency, img/s) and batch 64 (img/s) on 2 threads, checks that ONNX Runtime (and tract)
agree with keen-runtime on the top-1 class of Fashion-MNIST test images, prints a table with the
keen/ORT ratios and writes everything as JSON under bench/results/.

Run it through bench/runtime_bench.sh, which builds the binaries and the Python environment.
"""

import argparse
import gzip
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

THREADS = 2
ROOT = Path(__file__).resolve().parent.parent


def run(cmd, env=None):
    """Runs a command, returning stdout; fails loudly with its stderr."""
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"command failed: {' '.join(map(str, cmd))}\n{result.stderr}")
    return result.stdout


def thread_env():
    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(THREADS)
    env["OMP_NUM_THREADS"] = str(THREADS)
    return env


def load_images(data_dir, count):
    """The first `count` Fashion-MNIST test images in [0, 1] and their labels."""
    def read(name):
        path = Path(data_dir) / name
        raw = path.read_bytes() if path.exists() else gzip.open(str(path) + ".gz").read()
        return raw
    images = read("t10k-images-idx3-ubyte")
    labels = read("t10k-labels-idx1-ubyte")
    n, rows, cols = struct.unpack(">III", images[4:16])
    count = min(count, n)
    x = np.frombuffer(images, dtype=np.uint8, offset=16)[: count * rows * cols]
    x = x.reshape(count, 1, rows, cols).astype(np.float32) / 255.0
    y = np.frombuffer(labels, dtype=np.uint8, offset=8)[:count].astype(np.int64)
    return x, y


def normalization(onnx_path):
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    norm = json.loads(meta["normalization"])
    return (np.array(norm["mean"], dtype=np.float32).reshape(1, -1, 1, 1),
            np.array(norm["std"], dtype=np.float32).reshape(1, -1, 1, 1))


def ort_session(path, optimized_copy=None):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_copy:
        opts.optimized_model_filepath = str(optimized_copy)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def median_seconds(fn, runs):
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def bench_ort(path, shape, runs, workdir, tag):
    optimized = Path(workdir) / f"{tag}-ort-optimized.onnx"
    sess = ort_session(path, optimized)
    name = sess.get_inputs()[0].name
    out = {}
    for batch in (1, 64):
        x = np.full((batch, *shape), 0.1, dtype=np.float32)
        s = median_seconds(lambda: sess.run(None, {name: x}), runs if batch == 1 else max(runs // 4, 10))
        out[f"batch{batch}_p50_ms"] = s * 1e3
        out[f"batch{batch}_img_s"] = batch / s
    ops = {}
    for node in onnx.load(str(optimized)).graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    out["optimized_ops"] = ops
    return out


def bench_keen(keen, path, runs):
    env = thread_env()
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        run([keen, "bench", path, "--batch", "64", "--iterations", str(runs), "--output", f.name], env)
        report = json.load(open(f.name))
    # keen bench's batch-1 figure is a p50 latency; batch 64 is a throughput.
    return {
        "batch1_p50_ms": report["batch1_p50_ms"],
        "batch1_img_s": 1e3 / report["batch1_p50_ms"],
        "batch64_p50_ms": report["batch_p50_ms"],
        "batch64_img_s": report["images_per_sec"],
    }


def bench_tract(helper, path, shape, runs):
    out = run([helper, "tract", path, *map(str, shape), "--iterations", str(runs)], thread_env())
    return json.loads(out)


def logits_with(helper, engine, model, images, workdir, tag):
    shape = images.shape[1:]
    src = Path(workdir) / "images.f32"
    images.astype("<f4").tofile(src)
    dst = Path(workdir) / f"{tag}-{engine}-logits.f32"
    run([helper, "logits", engine, model, src, *map(str, shape), dst], thread_env())
    return np.fromfile(dst, dtype="<f4").reshape(len(images), -1)


def agreement(reference, other, labels):
    a, b = reference.argmax(1), other.argmax(1)
    return {
        "top1_agreement": float((a == b).mean()),
        "accuracy": float((b == labels).mean()),
        "max_abs_logit_diff": float(np.abs(reference - other).max()),
    }


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmt(v, digits=1):
    return "—" if v is None else f"{v:,.{digits}f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="runs/compress-fmnist-8ep/qat/model.safetensors")
    p.add_argument("--keen", default=str(Path.home() / ".cache/keen/target/release/keen"))
    p.add_argument("--helper", default=str(Path.home() / ".cache/keen/target-onnx/release/examples/runtime_bench"))
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--runs", type=int, default=200, help="timed runs at batch 1 (batch 64: a quarter)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best is reported")
    p.add_argument("--out", default=str(ROOT / "bench/results/runtime_bench.json"))
    p.add_argument("--workdir", default=None, help="keep the exported files here")
    args = p.parse_args()

    workdir = args.workdir or tempfile.mkdtemp(prefix="keen-runtime-bench-")
    os.makedirs(workdir, exist_ok=True)
    w = Path(workdir)
    files = {
        "keen_int8": w / "student-int8.keenrt",
        "keen_fp32": w / "student-fp32.keenrt",
        "ort_int8": w / "student-int8.onnx",
        "ort_fp32": w / "student-fp32.onnx",
    }
    print(f"exporting {args.model} into {workdir}", file=sys.stderr)
    run([args.keen, "export", args.model, "--format", "runtime", "--out", files["keen_int8"]])
    run([args.keen, "export", args.model, "--format", "runtime-fp32", "--out", files["keen_fp32"]])
    run([args.keen, "export", files["keen_int8"], "--format", "onnx-int8", "--out", files["ort_int8"]])
    run([args.keen, "export", files["keen_fp32"], "--format", "onnx", "--out", files["ort_fp32"]])
    for key in ("ort_int8", "ort_fp32"):
        onnx.checker.check_model(onnx.load(str(files[key])), full_check=True)

    model = onnx.load(str(files["ort_fp32"]))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in dims[1:])

    # Agreement on real images, normalised as the model expects.
    x, y = load_images(args.data, args.images)
    mean, std = normalization(files["ort_fp32"])
    x = ((x - mean) / std).astype(np.float32)
    checks = {}
    for precision in ("int8", "fp32"):
        keen_logits = logits_with(args.helper, "keen", files[f"keen_{precision}"], x, w, precision)
        sess = ort_session(files[f"ort_{precision}"])
        name = sess.get_inputs()[0].name
        ort_logits = np.concatenate([sess.run(None, {name: x[i:i + 100]})[0] for i in range(0, len(x), 100)])
        checks[f"ort_{precision}"] = agreement(keen_logits, ort_logits, y)
        checks[f"keen_{precision}"] = {"accuracy": float((keen_logits.argmax(1) == y).mean())}
        try:
            tract_logits = logits_with(args.helper, "tract", files[f"ort_{precision}"], x, w, precision)
            checks[f"tract_{precision}"] = agreement(keen_logits, tract_logits, y)
        except SystemExit as e:
            checks[f"tract_{precision}"] = {"error": str(e)[:300]}

    load_at_start = os.getloadavg()[0]
    print("timing...", file=sys.stderr)
    # Rounds alternate the engines so that a change in machine load hits all of them alike;
    # each figure is the best round (least disturbed by other processes), all rounds are kept.
    engines = {
        "keen_int8": lambda: bench_keen(args.keen, files["keen_int8"], args.runs),
        "ort_int8": lambda: bench_ort(files["ort_int8"], shape, args.runs, w, "int8"),
        "tract_int8": lambda: bench_tract(args.helper, files["ort_int8"], shape, args.runs // 4),
        "keen_fp32": lambda: bench_keen(args.keen, files["keen_fp32"], args.runs),
        "ort_fp32": lambda: bench_ort(files["ort_fp32"], shape, args.runs, w, "fp32"),
        "tract_fp32": lambda: bench_tract(args.helper, files["ort_fp32"], shape, args.runs // 4),
    }
    rounds = {key: [] for key in engines}
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
        for key, fn in engines.items():
            rounds[key].append(fn())
    results = {}
    for key, runs in rounds.items():
        best = dict(runs[0])
        for name in ("batch1_p50_ms", "batch64_p50_ms"):
            values = [x[name] for x in runs if name in x]
            if values:
                best[name] = min(values)
        for name in ("batch1_img_s", "batch64_img_s"):
            values = [x[name] for x in runs if name in x]
            if values:
                best[name] = max(values)
        best["rounds"] = runs
        results[key] = best
    peak = json.loads(run([args.helper, "peak"]))

    rows = [
        ("keen-runtime INT8", "keen_int8"),
        ("ONNX Runtime INT8 (QDQ)", "ort_int8"),
        ("tract INT8 (QDQ)", "tract_int8"),
        ("keen-runtime fp32", "keen_fp32"),
        ("ONNX Runtime fp32", "ort_fp32"),
        ("tract fp32", "tract_fp32"),
    ]
    macs = json.loads(run([args.keen, "info", args.model, "--json"])).get("macs")
    print()
    print(f"| engine | batch 1 p50 ms | batch 1 img/s | batch 64 img/s | batch 64 GFLOP/s | top-1 agreement with keen |")
    print("|---|---|---|---|---|---|")
    for label, key in rows:
        r = results[key]
        b1 = r.get("batch1_p50_ms")
        b1s = r.get("batch1_img_s")
        b64 = r.get("batch64_img_s")
        gflops = b64 * 2 * macs / 1e9 if (b64 and macs) else None
        check = checks.get(key, {})
        agree = f"{check['top1_agreement']:.1%}" if "top1_agreement" in check else "(reference)" if key.startswith("keen") else "—"
        print(f"| {label} | {fmt(b1, 3)} | {fmt(b1s)} | {fmt(b64)} | {fmt(gflops, 2)} | {agree} |")
    ratios = {}
    for precision in ("int8", "fp32"):
        k, o = results[f"keen_{precision}"], results[f"ort_{precision}"]
        ratios[precision] = {
            "batch1_latency_x": o["batch1_p50_ms"] / k["batch1_p50_ms"],
            "batch64_throughput_x": k["batch64_img_s"] / o["batch64_img_s"],
        }
    print()
    for precision, goal in (("int8", 1.5), ("fp32", 1.0)):
        r = ratios[precision]
        for what in ("batch1_latency_x", "batch64_throughput_x"):
            verdict = "met" if r[what] >= goal else "MISSED"
            print(f"keen/ORT {precision} {what}: {r[what]:.2f}x (goal >= {goal}x: {verdict})")
    print(f"peak: {peak}")
    print(f"ORT INT8 optimized graph ops: {results['ort_int8']['optimized_ops']}")

    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "model": args.model,
        "model_macs": macs,
        "threads": THREADS,
        "rounds": args.rounds,
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "load_average_1m_start": load_at_start,
            "load_average_1m_end": os.getloadavg()[0],
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
        },
        "peak": peak,
        "results": results,
        "ratios_keen_over_ort": ratios,
        "agreement": checks,
        "images": len(x),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

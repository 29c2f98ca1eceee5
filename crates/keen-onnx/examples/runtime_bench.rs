//! Helper for `bench/runtime_bench.py`: the Rust side of the keen-runtime / ONNX Runtime /
//! tract comparison. It links keen-runtime and tract (a dev-dependency of keen-onnx), so the
//! tract numbers need no tract CLI build.
//!
//! ```text
//! runtime_bench tract MODEL.onnx C H W [--iterations N]    # JSON: batch-1 p50, batch-64 img/s
//! runtime_bench keen MODEL.keenrt C H W [--iterations N]   # the same for keen-runtime
//! runtime_bench logits tract|keen MODEL IMAGES.f32 C H W OUT.f32   # logits of raw images
//! runtime_bench peak                                       # f32 FMA and u8·i8 VNNI peaks
//! ```
//!
//! Run with `cargo run --release -p keen-onnx --example runtime_bench -- ...`.

use std::time::Instant;

use tract_onnx::prelude::*;

type Runnable = Arc<TypedRunnableModel>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("tract") => tract_bench(&args[1..]),
        Some("keen") => keen_bench(&args[1..]),
        Some("logits") => logits(&args[1..]),
        Some("peak") => {
            peak();
            Ok(())
        }
        _ => Err("usage: runtime_bench tract|logits|peak ... (see the source's doc)".into()),
    }
}

fn dims(args: &[String]) -> Result<[usize; 3], Box<dyn std::error::Error>> {
    Ok([args[0].parse()?, args[1].parse()?, args[2].parse()?])
}

fn tract_model(path: &str, batch: usize, chw: [usize; 3]) -> TractResult<Runnable> {
    tract_onnx::onnx()
        .model_for_path(path)?
        .with_input_fact(0, f32::fact([batch, chw[0], chw[1], chw[2]]).into())?
        .into_optimized()?
        .into_runnable()
}

fn tract_run(
    model: &Runnable,
    batch: usize,
    chw: [usize; 3],
    data: &[f32],
) -> TractResult<Vec<f32>> {
    let input = Tensor::from_shape(&[batch, chw[0], chw[1], chw[2]], data)?;
    let out = model.run(tvec!(input.into_tvalue()))?;
    Ok(out[0]
        .to_plain_array_view::<f32>()?
        .iter()
        .copied()
        .collect())
}

/// Median seconds of `runs` timed calls after 3 warm-up calls.
fn median_seconds(runs: usize, mut f: impl FnMut() -> TractResult<()>) -> TractResult<f64> {
    for _ in 0..3 {
        f()?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn tract_bench(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let path = &args[0];
    let chw = dims(&args[1..4])?;
    let iterations: usize = match args.iter().position(|a| a == "--iterations") {
        Some(i) => args[i + 1].parse()?,
        None => 50,
    };
    let mut report = Vec::new();
    for batch in [1usize, 64] {
        let result = tract_model(path, batch, chw).and_then(|model| {
            let data = vec![0.1f32; batch * chw.iter().product::<usize>()];
            median_seconds(iterations, || {
                tract_run(&model, batch, chw, &data).map(|_| ())
            })
        });
        match result {
            Ok(s) => report.push(format!(
                "\"batch{batch}_p50_ms\": {:.4}, \"batch{batch}_img_s\": {:.1}",
                s * 1e3,
                batch as f64 / s
            )),
            Err(e) => {
                let msg = format!("{e:#}").replace('"', "'").replace('\n', " ");
                report.push(format!("\"batch{batch}_error\": \"{msg}\""));
            }
        }
    }
    println!("{{{}}}", report.join(", "));
    Ok(())
}

/// keen-runtime timed exactly like tract (`keen bench` is the product's own figure).
fn keen_bench(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let model = keen_runtime::Model::load(&args[0])?;
    let chw = dims(&args[1..4])?;
    let iterations: usize = match args.iter().position(|a| a == "--iterations") {
        Some(i) => args[i + 1].parse()?,
        None => 50,
    };
    let batches: Vec<usize> = match args.iter().position(|a| a == "--batch") {
        Some(i) => vec![args[i + 1].parse()?],
        None => vec![1, 64],
    };
    let mut report = Vec::new();
    for batch in batches {
        let data = vec![0.1f32; batch * chw.iter().product::<usize>()];
        let input = keen_runtime::Tensor::new(vec![batch, chw[0], chw[1], chw[2]], data)?;
        let s = median_seconds(iterations, || {
            model
                .run(&input)
                .map(|_| ())
                .map_err(|e| TractError::msg(e.to_string()))
        })?;
        report.push(format!(
            "\"batch{batch}_p50_ms\": {:.4}, \"batch{batch}_img_s\": {:.1}",
            s * 1e3,
            batch as f64 / s
        ));
    }
    println!("{{{}}}", report.join(", "));
    Ok(())
}

fn read_f32(path: &str) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    Ok(std::fs::read(path)?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Logits of every image of a raw little-endian f32 file `[n, C, H, W]`, in batches of 100.
fn logits(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let (engine, model_path, images_path) = (&args[0], &args[1], &args[2]);
    let chw = dims(&args[3..6])?;
    let out_path = &args[6];
    let images = read_f32(images_path)?;
    let per = chw.iter().product::<usize>();
    let n = images.len() / per;
    let batch = 100.min(n.max(1));
    let mut out = Vec::new();
    match engine.as_str() {
        "keen" => {
            let model = keen_runtime::Model::load(model_path)?;
            for chunk in images.chunks(batch * per) {
                let b = chunk.len() / per;
                let t = keen_runtime::Tensor::new(vec![b, chw[0], chw[1], chw[2]], chunk.to_vec())?;
                out.extend_from_slice(model.run(&t)?.data());
            }
        }
        "tract" => {
            let mut models = std::collections::HashMap::new();
            for chunk in images.chunks(batch * per) {
                let b = chunk.len() / per;
                let model = match models.entry(b) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(tract_model(model_path, b, chw)?)
                    }
                };
                out.extend(tract_run(model, b, chw, chunk)?);
            }
        }
        other => return Err(format!("unknown engine {other}").into()),
    }
    let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(out_path, bytes)?;
    Ok(())
}

/// Peak arithmetic rates of this CPU from tight register-only loops: f32 FMA (AVX-512, else
/// AVX2) and u8×i8→i32 `vpdpbusd` (AVX-512 VNNI), on 1 and 2 threads.
fn peak() {
    let mut fields = Vec::new();
    for threads in [1usize, 2] {
        let run = |f: fn(u64) -> f64| {
            let iters = 50_000_000u64;
            let t = Instant::now();
            let ops: f64 = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads).map(|_| s.spawn(move || f(iters))).collect();
                handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
            });
            ops / t.elapsed().as_secs_f64() / 1e9
        };
        fields.push(format!(
            "\"fp32_fma_gflops_{threads}t\": {:.1}",
            run(x86::fma_flops)
        ));
        fields.push(format!(
            "\"int8_vnni_gops_{threads}t\": {:.1}",
            run(x86::vnni_ops)
        ));
    }
    println!("{{{}}}", fields.join(", "));
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// FLOPs done by `iters` rounds of 8 independent FMA chains (2 flops per lane).
    pub fn fma_flops(iters: u64) -> f64 {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was just detected.
            unsafe { fma512(iters) }
        } else if is_x86_feature_detected!("fma") {
            // SAFETY: the feature was just detected.
            unsafe { fma256(iters) }
        } else {
            0.0
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn fma512(iters: u64) -> f64 {
        let a = _mm512_set1_ps(1.000_001);
        let b = _mm512_set1_ps(0.999_999);
        let mut acc = [_mm512_setzero_ps(); 8];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for v in acc {
            sum = _mm512_add_ps(sum, v);
        }
        std::hint::black_box(sum);
        iters as f64 * 8.0 * 16.0 * 2.0
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma256(iters: u64) -> f64 {
        let a = _mm256_set1_ps(1.000_001);
        let b = _mm256_set1_ps(0.999_999);
        let mut acc = [_mm256_setzero_ps(); 8];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut sum = _mm256_setzero_ps();
        for v in acc {
            sum = _mm256_add_ps(sum, v);
        }
        std::hint::black_box(sum);
        iters as f64 * 8.0 * 8.0 * 2.0
    }

    /// Multiply-adds (counted as 2 ops each) of `iters` rounds of 8 independent `vpdpbusd`
    /// chains, 64 u8×i8 products each.
    pub fn vnni_ops(iters: u64) -> f64 {
        if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512bw") {
            // SAFETY: the features were just detected.
            unsafe { vnni512(iters) }
        } else {
            0.0
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn vnni512(iters: u64) -> f64 {
        let a = _mm512_set1_epi8(3);
        let b = _mm512_set1_epi8(-2);
        let mut acc = [_mm512_setzero_si512(); 8];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_dpbusd_epi32(*v, a, b);
            }
        }
        let mut sum = _mm512_setzero_si512();
        for v in acc {
            sum = _mm512_add_epi32(sum, v);
        }
        std::hint::black_box(sum);
        iters as f64 * 8.0 * 64.0 * 2.0
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    pub fn fma_flops(_: u64) -> f64 {
        0.0
    }
    pub fn vnni_ops(_: u64) -> f64 {
        0.0
    }
}

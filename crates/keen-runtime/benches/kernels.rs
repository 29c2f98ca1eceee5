//! Kernel throughput on cnn-small's second convolution (64 filters of 32×3×3 over 14×14):
//! fp32 GEMM against each INT8 GEMM implementation, one image and sixteen images per call.
//! Run briefly: `cargo bench -p keen-runtime --bench kernels -- --warm-up-time 1 --measurement-time 2`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keen_runtime::kernels::qgemm::{qgemm, PackedA, PackedB, QgemmKernel};
use keen_runtime::kernels::sgemm::{sgemm, MatRef};
use keen_runtime::kernels::sparse::CsrMatrix;

fn gemms(c: &mut Criterion) {
    let (m, k) = (64, 288);
    for n in [196, 196 * 16] {
        let mut group = c.benchmark_group(format!("gemm_{m}x{k}x{n}"));
        group.throughput(Throughput::Elements((m * n * k) as u64));
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut out = vec![0f32; m * n];
        group.bench_function("sgemm_f32", |bench| {
            bench.iter(|| {
                sgemm(
                    MatRef::row_major(&a, m, k),
                    MatRef::row_major(&b, k, n),
                    &mut out,
                    n,
                    false,
                )
            })
        });
        for density_pct in [10usize, 20] {
            let pruned: Vec<f32> = a
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    if i * 37 % 100 < density_pct {
                        v + 0.01
                    } else {
                        0.0
                    }
                })
                .collect();
            let csr = CsrMatrix::from_dense(m, k, &pruned);
            group.bench_function(format!("sparse_f32_{density_pct}pct_dense"), |bench| {
                bench.iter(|| csr.matmul(MatRef::row_major(&b, k, n), &mut out))
            });
        }
        let qa: Vec<i8> = (0..m * k).map(|i| (i % 255) as i8).collect();
        let qb: Vec<u8> = (0..k * n).map(|i| (i % 251) as u8).collect();
        let pa = PackedA::pack(m, k, &qa);
        let mut acc = vec![0i32; m * n];
        group.bench_function("pack_b_u8", |bench| {
            bench.iter(|| PackedB::pack_kn(k, n, &qb, 0))
        });
        let pb = PackedB::pack_kn(k, n, &qb, 0);
        for kernel in QgemmKernel::available() {
            group.bench_with_input(
                BenchmarkId::new("qgemm", format!("{kernel:?}")),
                &kernel,
                |bench, &kernel| bench.iter(|| qgemm(kernel, &pa, &pb, &mut acc)),
            );
        }
        group.finish();
    }
}

criterion_group!(benches, gemms);
criterion_main!(benches);

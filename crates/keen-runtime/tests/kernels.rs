//! Property tests: every fast kernel against its scalar reference, on random shapes and values.

use keen_runtime::kernels::depthwise::{depthwise_f32, depthwise_u8};
use keen_runtime::kernels::im2col::im2col;
use keen_runtime::kernels::implicit::ImplicitIm2col;
use keen_runtime::kernels::qconv::qconv_implicit;
use keen_runtime::kernels::qgemm::{qgemm, PackedA, PackedB, QgemmKernel};
use keen_runtime::kernels::reference::{self, ConvGeometry};
use keen_runtime::kernels::sconv::{sconv_implicit, PackedWeights, SconvKernel};
use keen_runtime::kernels::sgemm::{sgemm, MatRef};
use keen_runtime::kernels::sparse::CsrMatrix;
use proptest::prelude::*;

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    // A cheap deterministic generator: proptest picks the seed, shapes stay shrinkable.
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u8
        })
        .collect()
}

fn floats(len: usize, seed: u64) -> Vec<f32> {
    bytes(len, seed)
        .into_iter()
        .map(|b| (b as f32 - 127.5) / 64.0)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every INT8 GEMM implementation this CPU has is bit-identical to the reference, for both
    /// activation packings and for extreme values (0, 255, -128, 127).
    #[test]
    fn qgemm_matches_reference(m in 1usize..40, n in 1usize..90, k in 1usize..70, seed: u64, extreme: bool) {
        let mut a: Vec<i8> = bytes(m * k, seed).into_iter().map(|b| b as i8).collect();
        let mut b = bytes(k * n, seed ^ 0xabc);
        if extreme {
            a.iter_mut().enumerate().for_each(|(i, v)| *v = if i % 2 == 0 { -128 } else { 127 });
            b.iter_mut().for_each(|v| *v = 255);
        }
        let want = reference::qgemm(m, n, k, &a, &b);
        let pa = PackedA::pack(m, k, &a);
        let pb = PackedB::pack_kn(k, n, &b, 0);
        // The same activations given as n×k rows must pack identically.
        let bt: Vec<u8> = (0..n).flat_map(|j| (0..k).map(move |p| (j, p))).map(|(j, p)| b[p * n + j]).collect();
        let pbt = PackedB::pack_nk(n, k, &bt, 0);
        // Repacking into a buffer that held a larger, all-255 matrix must not leak stale bytes.
        let mut reused = PackedB::pack_kn(k + 5, n + 17, &vec![255u8; (k + 5) * (n + 17)], 0);
        reused.repack_kn(k, n, &b, 0);
        for kernel in QgemmKernel::available() {
            for packed in [&pb, &pbt, &reused] {
                let mut c = vec![0i32; m * n];
                prop_assert!(qgemm(kernel, &pa, packed, &mut c));
                prop_assert_eq!(&c, &want, "{:?}", kernel);
            }
        }
    }

    /// XOR-ing i8 activations with 0x80 while packing gives the u8 GEMM of `x + 128`.
    #[test]
    fn qgemm_flip_offsets_by_128(m in 1usize..20, n in 1usize..40, k in 1usize..40, seed: u64) {
        let a: Vec<i8> = bytes(m * k, seed).into_iter().map(|b| b as i8).collect();
        let x = bytes(k * n, seed ^ 7); // raw i8 bytes
        let shifted: Vec<u8> = x.iter().map(|&v| ((v as i8) as i32 + 128) as u8).collect();
        let want = reference::qgemm(m, n, k, &a, &shifted);
        let mut c = vec![0i32; m * n];
        prop_assert!(qgemm(QgemmKernel::best(), &PackedA::pack(m, k, &a), &PackedB::pack_kn(k, n, &x, 0x80), &mut c));
        prop_assert_eq!(c, want);
    }

    /// The fp32 GEMM agrees with the f64-accumulating reference, transposed operands included.
    #[test]
    fn sgemm_matches_reference(m in 1usize..50, n in 1usize..50, k in 1usize..80, ta: bool, tb: bool, seed: u64) {
        let a = floats(m * k, seed);
        let b = floats(k * n, seed ^ 1);
        let am = if ta { MatRef::row_major(&a, k, m).t() } else { MatRef::row_major(&a, m, k) };
        let bm = if tb { MatRef::row_major(&b, n, k).t() } else { MatRef::row_major(&b, k, n) };
        let mut want = vec![0f32; m * n];
        reference::sgemm(m, n, k, &a, [am.row_stride, am.col_stride], &b, [bm.row_stride, bm.col_stride], &mut want);
        let mut got = vec![0f32; m * n];
        prop_assert!(sgemm(am, bm, &mut got, n, false));
        for (g, w) in got.iter().zip(&want) {
            prop_assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{} vs {}", g, w);
        }
    }

    /// im2col + GEMM is the direct convolution.
    #[test]
    fn im2col_gemm_matches_direct_conv(c in 1usize..5, co in 1usize..6, h in 1usize..9, w in 1usize..9,
                                       k in 1usize..4, s in 1usize..3, p in 0usize..2, seed: u64) {
        prop_assume!(p < k && h + 2 * p >= k && w + 2 * p >= k);
        let g = ConvGeometry { batch: 1, in_channels: c, in_hw: [h, w], out_channels: co, kernel: [k, k], stride: [s, s], padding: [p; 4], groups: 1 };
        let [oh, ow] = g.out_hw().unwrap();
        let x = floats(c * h * w, seed);
        let wt = floats(co * c * k * k, seed ^ 3);
        let mut cols = vec![0f32; c * k * k * oh * ow];
        prop_assert!(im2col(&g, c, &x, 0.0, &mut cols));
        let mut got = vec![0f32; co * oh * ow];
        prop_assert!(sgemm(MatRef::row_major(&wt, co, c * k * k), MatRef::row_major(&cols, c * k * k, oh * ow), &mut got, oh * ow, false));
        let want = reference::conv2d(&g, &x, &wt, None);
        for (a, b) in got.iter().zip(&want) {
            prop_assert!((a - b).abs() < 1e-4, "{} vs {}", a, b);
        }
    }

    /// The implicit-GEMM INT8 convolution (activation panels packed straight from the image) is
    /// bit-identical to the direct reference for every tile implementation: any kernel size up to
    /// 4×4 (non-square too), strides 1–3 per axis, uneven padding on each side, channel counts
    /// that are not multiples of 4, 8 or 16, the i8 input flip and extreme values.
    #[test]
    fn qconv_implicit_matches_reference(c in 1usize..11, co in 1usize..20, h in 1usize..12, w in 1usize..12,
                                        kh in 1usize..5, kw in 1usize..5, sh in 1usize..4, sw in 1usize..4,
                                        pad in proptest::array::uniform4(0usize..3), zp: u8, flip: bool,
                                        extreme: bool, seed: u64) {
        let g = ConvGeometry { batch: 1, in_channels: c, in_hw: [h, w], out_channels: co, kernel: [kh, kw], stride: [sh, sw], padding: pad, groups: 1 };
        prop_assume!(g.out_hw().is_some());
        let [oh, ow] = g.out_hw().unwrap();
        let mut x = bytes(c * h * w, seed);
        let mut wt: Vec<i8> = bytes(co * c * kh * kw, seed ^ 3).into_iter().map(|b| b as i8).collect();
        if extreme {
            x.iter_mut().for_each(|v| *v = 255);
            wt.iter_mut().enumerate().for_each(|(i, v)| *v = if i % 3 == 0 { -128 } else { 127 });
        }
        // With the flip, the kernel sees raw i8 bytes and XORs them with 0x80 itself.
        let mask = if flip { 0x80 } else { 0 };
        let raw: Vec<u8> = x.iter().map(|v| v ^ mask).collect();
        let want = reference::qconv2d(&g, &x, zp, &wt);
        let layout = ImplicitIm2col::new(&g, c).unwrap();
        prop_assert_eq!(layout.depth(), c * kh * kw);
        let packed = PackedA::pack(co, c * kh * kw, &wt);
        for kernel in QgemmKernel::available() {
            let mut got = vec![7i32; co * oh * ow];
            prop_assert!(qconv_implicit(kernel, &layout, &packed, &raw, zp, mask, &mut got));
            prop_assert_eq!(&got, &want, "{:?}", kernel);
        }
    }

    /// The fp32 implicit-GEMM convolution (portable tile, and the AVX-512 one where the CPU has
    /// it) agrees with the f64-accumulating direct reference on the same odd shapes.
    #[test]
    fn sconv_implicit_matches_reference(c in 1usize..11, co in 1usize..20, h in 1usize..12, w in 1usize..12,
                                        kh in 1usize..5, kw in 1usize..5, sh in 1usize..4, sw in 1usize..4,
                                        pad in proptest::array::uniform4(0usize..3), seed: u64) {
        let g = ConvGeometry { batch: 1, in_channels: c, in_hw: [h, w], out_channels: co, kernel: [kh, kw], stride: [sh, sw], padding: pad, groups: 1 };
        prop_assume!(g.out_hw().is_some());
        let [oh, ow] = g.out_hw().unwrap();
        let x = floats(c * h * w, seed);
        let wt = floats(co * c * kh * kw, seed ^ 3);
        let want = reference::conv2d(&g, &x, &wt, None);
        let layout = ImplicitIm2col::new(&g, c).unwrap();
        let packed = PackedWeights::pack(co, c * kh * kw, &wt);
        for kernel in [Some(SconvKernel::Portable), SconvKernel::fast()].into_iter().flatten() {
            let mut got = vec![f32::NAN; co * oh * ow];
            prop_assert!(sconv_implicit(kernel, &layout, &packed, &x, &mut got));
            for (a, b) in got.iter().zip(&want) {
                prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{:?}: {} vs {}", kernel, a, b);
            }
        }
    }

    /// Direct depthwise convolution (fp32 and int8) against the reference with groups = channels.
    #[test]
    fn depthwise_matches_reference(c in 1usize..6, h in 1usize..10, w in 1usize..10, k in 1usize..4,
                                   s in 1usize..3, p in 0usize..2, zp: u8, seed: u64) {
        prop_assume!(p < k && h + 2 * p >= k && w + 2 * p >= k);
        let g = ConvGeometry { batch: 1, in_channels: c, in_hw: [h, w], out_channels: c, kernel: [k, k], stride: [s, s], padding: [p, p, p, p], groups: c };
        let [oh, ow] = g.out_hw().unwrap();
        let x = floats(c * h * w, seed);
        let wt = floats(c * k * k, seed ^ 5);
        let mut got = vec![0f32; c * oh * ow];
        depthwise_f32(&g, &x, &wt, &mut got);
        let want = reference::conv2d(&g, &x, &wt, None);
        for (a, b) in got.iter().zip(&want) {
            prop_assert!((a - b).abs() < 1e-4, "{} vs {}", a, b);
        }
        let xq = bytes(c * h * w, seed ^ 9);
        let wq: Vec<i8> = bytes(c * k * k, seed ^ 11).into_iter().map(|b| b as i8).collect();
        let mut got = vec![0i32; c * oh * ow];
        depthwise_u8(&g, &xq, zp, &wq, &mut got);
        prop_assert_eq!(got, reference::qconv2d(&g, &xq, zp, &wq));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// CSR × dense equals the dense product, at any sparsity (empty rows included).
    #[test]
    fn sparse_matmul_matches_reference(m in 1usize..30, n in 1usize..40, k in 1usize..50, keep in 0u8..=255, seed: u64) {
        let mask = bytes(m * k, seed ^ 13);
        let a: Vec<f32> = floats(m * k, seed).iter().zip(&mask).map(|(v, &r)| if r <= keep { *v } else { 0.0 }).collect();
        let b = floats(k * n, seed ^ 2);
        let mut want = vec![0f32; m * n];
        reference::sgemm(m, n, k, &a, [k, 1], &b, [n, 1], &mut want);
        let csr = CsrMatrix::from_dense(m, k, &a);
        let mut got = vec![1f32; m * n];
        prop_assert!(csr.matmul(MatRef::row_major(&b, k, n), &mut got));
        for (g, w) in got.iter().zip(&want) {
            prop_assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{} vs {}", g, w);
        }
    }
}

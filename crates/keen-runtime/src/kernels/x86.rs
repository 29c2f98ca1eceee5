//! x86-64 SIMD tiles for [`super::qgemm`], chosen at run time by CPU feature detection.
//!
//! Both compute the same `MR × 2·NR` tile as [`super::qgemm::tile_scalar`], bit for bit.

use std::arch::x86_64::*;

use super::qgemm::{MR, NR};

const TILE_N: usize = 2 * NR;

/// True when the CPU has AVX-512 F, BW and VNNI (`vpdpbusd` on zmm registers).
pub fn has_avx512_vnni() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

/// True when the CPU has AVX2.
pub fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
}

fn check_lengths(groups: usize, a: &[i8], b0: &[u8], b1: &[u8], out: &[i32]) -> bool {
    a.len() >= groups * MR * 4
        && b0.len() >= groups * NR * 4
        && b1.len() >= groups * NR * 4
        && out.len() >= MR * TILE_N
}

/// The VNNI tile; falls back to the scalar tile if the CPU lacks VNNI or a slice is short.
pub fn tile_vnni(groups: usize, a: &[i8], b0: &[u8], b1: &[u8], out: &mut [i32]) {
    if !has_avx512_vnni() || !check_lengths(groups, a, b0, b1, out) {
        return super::qgemm::tile_scalar(groups, a, b0, b1, out);
    }
    // SAFETY: the features were detected above and every slice is long enough for `groups`.
    unsafe {
        tile_vnni_impl(
            groups,
            a.as_ptr(),
            b0.as_ptr(),
            b1.as_ptr(),
            out.as_mut_ptr(),
        )
    }
}

/// The AVX2 tile; falls back to the scalar tile if the CPU lacks AVX2 or a slice is short.
pub fn tile_avx2(groups: usize, a: &[i8], b0: &[u8], b1: &[u8], out: &mut [i32]) {
    if !has_avx2() || !check_lengths(groups, a, b0, b1, out) {
        return super::qgemm::tile_scalar(groups, a, b0, b1, out);
    }
    // SAFETY: as above.
    unsafe {
        tile_avx2_impl(
            groups,
            a.as_ptr(),
            b0.as_ptr(),
            b1.as_ptr(),
            out.as_mut_ptr(),
        )
    }
}

/// 8 rows × 32 columns in 16 zmm accumulators. Per group of 4 k: two 64-byte activation loads
/// (16 columns × 4 bytes each), eight 4-byte weight broadcasts, sixteen `vpdpbusd`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni_impl(groups: usize, a: *const i8, b0: *const u8, b1: *const u8, out: *mut i32) {
    let mut acc = [[_mm512_setzero_si512(); 2]; MR];
    for g in 0..groups {
        let x0 = _mm512_loadu_si512(b0.add(g * NR * 4).cast());
        let x1 = _mm512_loadu_si512(b1.add(g * NR * 4).cast());
        let wrow = a.add(g * MR * 4);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let w = _mm512_set1_epi32(wrow.add(r * 4).cast::<i32>().read_unaligned());
            // vpdpbusd: u8 (first) × i8 (second), four products summed into each i32 lane.
            acc_r[0] = _mm512_dpbusd_epi32(acc_r[0], x0, w);
            acc_r[1] = _mm512_dpbusd_epi32(acc_r[1], x1, w);
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        _mm512_storeu_si512(out.add(r * TILE_N).cast(), acc_r[0]);
        _mm512_storeu_si512(out.add(r * TILE_N + NR).cast(), acc_r[1]);
    }
}

/// One row at a time, 32 columns in eight ymm accumulators of column pairs. Bytes are widened
/// to i16 and multiplied with `vpmaddwd` (i16×i16 pairs summed into i32), which cannot saturate;
/// `vpmaddubsw` would be twice as fast but saturates at i16 for u8×i8 pairs above 32767.
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2_impl(groups: usize, a: *const i8, b0: *const u8, b1: *const u8, out: *mut i32) {
    for r in 0..MR {
        let mut acc = [_mm256_setzero_si256(); 8];
        for g in 0..groups {
            let w4 = a.add((g * MR + r) * 4).cast::<i32>().read_unaligned();
            // [w0 w1 w2 w3 w0 w1 w2 w3] as i16, in both 128-bit halves.
            let w = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_set1_epi32(w4)));
            for (chunk, acc_c) in acc.iter_mut().enumerate() {
                let base = if chunk < 4 { b0 } else { b1 };
                let p = base.add(g * NR * 4 + (chunk % 4) * 16);
                // 4 columns × 4 k-bytes, widened to 16 i16.
                let x = _mm256_cvtepu8_epi16(_mm_loadu_si128(p.cast()));
                *acc_c = _mm256_add_epi32(*acc_c, _mm256_madd_epi16(x, w));
            }
        }
        // Each accumulator holds [c0 c0 c1 c1 c2 c2 c3 c3] partial pairs: add the pairs.
        let mut pairs = [0i32; 64];
        for (chunk, acc_c) in acc.iter().enumerate() {
            _mm256_storeu_si256(pairs.as_mut_ptr().add(chunk * 8).cast(), *acc_c);
        }
        for c in 0..TILE_N {
            *out.add(r * TILE_N + c) = pairs[2 * c] + pairs[2 * c + 1];
        }
    }
}

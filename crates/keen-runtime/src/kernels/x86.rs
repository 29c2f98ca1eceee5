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

/// True when the CPU has AVX-512 F, BW and VL (byte-masked loads and stores on zmm and ymm).
pub fn has_avx512bw_vl() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
}

/// Mask of the first `len` (at most 64) lanes.
#[inline(always)]
fn first_lanes(len: usize) -> u64 {
    if len >= 64 {
        !0
    } else {
        (1u64 << len) - 1
    }
}

/// `dst[i] = src[i] ^ flip` for `i < min(dst.len(), src.len())`, 64 bytes per masked
/// load/store, so a 28-byte image row is one of each (no scalar tail, no `memcpy` call).
///
/// # Safety
/// The CPU must have AVX-512 F and BW ([`has_avx512bw_vl`]).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn copy_xor_bytes(dst: &mut [u8], src: &[u8], flip: u8) {
    let n = dst.len().min(src.len());
    let f = _mm512_set1_epi8(flip as i8);
    let mut i = 0;
    while i < n {
        let mask = first_lanes(n - i);
        let v = _mm512_maskz_loadu_epi8(mask, src.as_ptr().add(i).cast());
        _mm512_mask_storeu_epi8(dst.as_mut_ptr().add(i).cast(), mask, _mm512_xor_si512(v, f));
        i += 64;
    }
}

/// Splits `src` into its even bytes (`even[x] = src[2x]`) and odd bytes (`odd[x] = src[2x + 1]`),
/// for `x < even.len()` (`odd` as long); `src` must hold `2 · even.len()` bytes rounded up to 64.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VL ([`has_avx512bw_vl`]).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn deinterleave2_bytes(src: &[u8], even: &mut [u8], odd: &mut [u8]) {
    let n = even.len().min(odd.len());
    if src.len() < (2 * n).div_ceil(64) * 64 {
        for (x, (e, o)) in even.iter_mut().zip(odd.iter_mut()).enumerate() {
            (*e, *o) = (src[2 * x], src[2 * x + 1]);
        }
        return;
    }
    let mut x = 0;
    while x < n {
        let v = _mm512_loadu_si512(src.as_ptr().add(2 * x).cast());
        let mask = first_lanes(n - x) as u32;
        // vpmovwb keeps each 16-bit lane's low byte: the even bytes; shifted, the odd ones.
        let e = _mm512_cvtepi16_epi8(v);
        let o = _mm512_cvtepi16_epi8(_mm512_srli_epi16::<8>(v));
        _mm256_mask_storeu_epi8(even.as_mut_ptr().add(x).cast(), mask, e);
        _mm256_mask_storeu_epi8(odd.as_mut_ptr().add(x).cast(), mask, o);
        x += 32;
    }
}

/// Copies `len` (at most 32) i32 from `src` to `dst` with two masked 16-lane stores: the short
/// runs a convolution tile scatters into its output rows, without a `memcpy` call each.
///
/// # Safety
/// The CPU must have AVX-512 F; `src` and `dst` must be valid for `len` elements.
#[inline]
#[target_feature(enable = "avx512f")]
pub unsafe fn copy_i32_run(src: *const i32, dst: *mut i32, len: usize) {
    let lo = first_lanes(len.min(16)) as u16;
    _mm512_mask_storeu_epi32(dst.cast(), lo, _mm512_maskz_loadu_epi32(lo, src.cast()));
    if len > 16 {
        let hi = first_lanes(len - 16) as u16;
        let v = _mm512_maskz_loadu_epi32(hi, src.add(16).cast());
        _mm512_mask_storeu_epi32(dst.add(16).cast(), hi, v);
    }
}

/// Packs one 32-column tile of activations for [`super::qconv`]: for every group of 4 depth
/// rows (`offsets`, 4 per group), the 32 bytes at `base + offset + j0` of each of the 4 rows,
/// interleaved into two `[NR][4]` panels (`p0`: columns 0–15, `p1`: 16–31), AVX2 unpacks.
///
/// # Safety
/// The CPU must have AVX2; for every offset `o`, `base[o + j0 .. o + j0 + 32]` must be readable;
/// `p0` and `p1` must hold `offsets.len() / 4 · 64` bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub unsafe fn pack_tile_avx2(
    base: *const u8,
    offsets: &[usize],
    j0: usize,
    p0: *mut u8,
    p1: *mut u8,
) {
    for (g, o) in offsets.chunks_exact(4).enumerate() {
        let load = |q: usize| _mm256_loadu_si256(base.add(o[q] + j0).cast());
        let (a, b, c, d) = (load(0), load(1), load(2), load(3));
        // Within each 128-bit lane: (a0 b0 c0 d0) (a1 b1 c1 d1) ...; lane 0 holds columns
        // 0–15, lane 1 columns 16–31.
        let (ab_lo, ab_hi) = (_mm256_unpacklo_epi8(a, b), _mm256_unpackhi_epi8(a, b));
        let (cd_lo, cd_hi) = (_mm256_unpacklo_epi8(c, d), _mm256_unpackhi_epi8(c, d));
        let r0 = _mm256_unpacklo_epi16(ab_lo, cd_lo); // columns 0–3 | 16–19
        let r1 = _mm256_unpackhi_epi16(ab_lo, cd_lo); // 4–7 | 20–23
        let r2 = _mm256_unpacklo_epi16(ab_hi, cd_hi); // 8–11 | 24–27
        let r3 = _mm256_unpackhi_epi16(ab_hi, cd_hi); // 12–15 | 28–31
        let d0 = p0.add(g * 64).cast::<__m256i>();
        let d1 = p1.add(g * 64).cast::<__m256i>();
        _mm256_storeu_si256(d0, _mm256_permute2x128_si256::<0x20>(r0, r1));
        _mm256_storeu_si256(d0.add(1), _mm256_permute2x128_si256::<0x20>(r2, r3));
        _mm256_storeu_si256(d1, _mm256_permute2x128_si256::<0x31>(r0, r1));
        _mm256_storeu_si256(d1.add(1), _mm256_permute2x128_si256::<0x31>(r2, r3));
    }
}

/// Writes one padded image row straight into its stride phases, in registers: the padded row
/// is `pl` bytes of `pad`, then `image[start..start + w]` XOR-ed with `flip`, then `pad`;
/// phase 0 (`dst0`) gets its bytes `x·sw`, phase 1 (`dst1`, when given and `sw == 2`) its bytes
/// `x·sw + 1`, for `x < wq`. `sw` must be 1 or 2. `w == 0` writes a row of padding. Where the
/// 64 bytes around the row lie inside `image`, they are read with a plain load (the masked one
/// stalled on this code's hottest line) and the padding is blended in.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VL; `dst0` (and `dst1`) must be valid for `wq` bytes.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn pad_split_row(
    image: &[u8],
    start: usize,
    w: usize,
    pl: usize,
    flip: u8,
    pad: u8,
    sw: usize,
    wq: usize,
    dst0: *mut u8,
    dst1: Option<*mut u8>,
) {
    let w = w.min(image.len().saturating_sub(start));
    let (padv, f) = (_mm512_set1_epi8(pad as i8), _mm512_set1_epi8(flip as i8));
    let mut x0 = 0; // padded column of the chunk's first lane
    while x0 < wq * sw {
        // Lanes whose image column `x0 + lane - pl` lies in 0..w.
        let lo = pl.saturating_sub(x0).min(64);
        let hi = (pl + w).saturating_sub(x0).min(64);
        let inside = first_lanes(hi) & !first_lanes(lo);
        // Masked-off lanes are neither read nor faulted on, so the pointer may start before
        // the row (left padding) or run past its end.
        let first = (start + x0).wrapping_sub(pl);
        let p = image.as_ptr().wrapping_add(first);
        let v = if start + x0 >= pl && first + 64 <= image.len() {
            _mm512_loadu_si512(p.cast())
        } else {
            _mm512_maskz_loadu_epi8(inside, p.cast())
        };
        let v = _mm512_mask_blend_epi8(inside, padv, _mm512_xor_si512(v, f));
        if sw == 1 {
            _mm512_mask_storeu_epi8(dst0.add(x0).cast(), first_lanes(wq - x0), v);
        } else {
            let (x, mask) = (x0 / 2, first_lanes(wq - x0 / 2) as u32);
            // vpmovwb keeps each 16-bit lane's low byte: the even bytes; shifted, the odd ones.
            _mm256_mask_storeu_epi8(dst0.add(x).cast(), mask, _mm512_cvtepi16_epi8(v));
            if let Some(d1) = dst1 {
                let odd = _mm512_cvtepi16_epi8(_mm512_srli_epi16::<8>(v));
                _mm256_mask_storeu_epi8(d1.add(x).cast(), mask, odd);
            }
        }
        x0 += 64;
    }
}

/// [`pad_split_row`] for f32 rows (padding 0.0, no flip), 16 floats per chunk: phase 0 (`dst0`)
/// gets padded floats `x·sw`, phase 1 (`dst1`, when given and `sw == 2`) floats `x·sw + 1`, for
/// `x < wq`; `vpmovqd` splits even and odd floats for stride 2.
///
/// # Safety
/// The CPU must have AVX-512 F and VL; `dst0` (and `dst1`) must be valid for `wq` floats.
#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512vl")]
pub unsafe fn pad_split_row_f32(
    image: &[f32],
    start: usize,
    w: usize,
    pl: usize,
    sw: usize,
    wq: usize,
    dst0: *mut f32,
    dst1: Option<*mut f32>,
) {
    let w = w.min(image.len().saturating_sub(start));
    let mut x0 = 0; // padded column of the chunk's first lane
    while x0 < wq * sw {
        let lo = pl.saturating_sub(x0).min(16);
        let hi = (pl + w).saturating_sub(x0).min(16);
        let inside = (first_lanes(hi) & !first_lanes(lo)) as u16;
        let first = (start + x0).wrapping_sub(pl);
        let p = image.as_ptr().wrapping_add(first);
        // Masked-off lanes are neither read nor faulted on; zeroed, they are the padding.
        let v = if start + x0 >= pl && first + 16 <= image.len() {
            _mm512_maskz_mov_ps(inside, _mm512_loadu_ps(p))
        } else {
            _mm512_maskz_loadu_ps(inside, p)
        };
        if sw == 1 {
            _mm512_mask_storeu_ps(dst0.add(x0), first_lanes(wq - x0) as u16, v);
        } else {
            let (x, mask) = (x0 / 2, first_lanes(wq - x0 / 2) as u8);
            // Each 64-bit lane holds an (even, odd) pair: vpmovqd keeps the even float.
            let pairs = _mm512_castps_si512(v);
            let even = _mm512_cvtepi64_epi32(pairs);
            _mm256_mask_storeu_epi32(dst0.add(x).cast(), mask, even);
            if let Some(d1) = dst1 {
                let odd = _mm512_cvtepi64_epi32(_mm512_srli_epi64::<32>(pairs));
                _mm256_mask_storeu_epi32(d1.add(x).cast(), mask, odd);
            }
        }
        x0 += 16;
    }
}

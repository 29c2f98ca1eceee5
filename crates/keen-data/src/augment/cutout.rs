//! Cutout (DeVries & Taylor 2017): a square of the image painted one colour.

use rand::Rng;

/// The gray FixMatch's reference code paints with (127 on every channel).
pub const CUTOUT_FILL: u8 = 127;

/// Paints a `size × size` square centred on a uniformly drawn pixel with `fill`, clipped to
/// the image (so squares near a border cover less), on every channel of a CHW image.
pub fn cutout(img: &mut [u8], shape: [usize; 3], size: usize, fill: u8, rng: &mut impl Rng) {
    let [c, h, w] = shape;
    if size == 0 || h == 0 || w == 0 {
        return;
    }
    let (cy, cx) = (rng.random_range(0..h), rng.random_range(0..w));
    let (top, left) = (cy.saturating_sub(size / 2), cx.saturating_sub(size / 2));
    let (bottom, right) = (
        (cy + size.div_ceil(2)).min(h),
        (cx + size.div_ceil(2)).min(w),
    );
    for ch in 0..c {
        for y in top..bottom {
            let row = ch * h * w + y * w;
            img[row + left..row + right].fill(fill);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn paints_at_most_a_square_and_a_full_one_inside_the_image() {
        let shape = [2, 10, 12];
        let mut full_squares = 0;
        for seed in 0..50 {
            let mut img = vec![0u8; 240];
            cutout(
                &mut img,
                shape,
                4,
                200,
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            let painted = img.iter().filter(|&&v| v == 200).count();
            assert!(painted > 0 && painted <= 2 * 16, "{painted}");
            // Both channels are painted alike.
            assert_eq!(img[..120], img[120..]);
            full_squares += usize::from(painted == 32);
        }
        assert!(full_squares > 10, "{full_squares}");
    }
}

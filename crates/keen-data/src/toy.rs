//! A tiny learnable dataset made in memory, for tests, examples and smoke runs that must not
//! depend on files: one half of each 12×12 grayscale image is bright, the other dark, with noise.

use crate::dataset::ImageDataset;

/// Which halves the two classes light up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halves {
    /// Class 0 bright on the left, class 1 on the right (a horizontal flip swaps the classes).
    LeftRight,
    /// Class 0 bright on top, class 1 at the bottom (survives horizontal flips).
    TopBottom,
}

/// `n` images alternating between the two classes, with noise drawn from `seed`.
pub fn halves_dataset(n: usize, seed: u64, halves: Halves) -> ImageDataset {
    let (h, w) = (12usize, 12usize);
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % 60) as u8
    };
    let mut images = Vec::with_capacity(n * h * w);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 2) as u32;
        for y in 0..h {
            for x in 0..w {
                let first_half = match halves {
                    Halves::LeftRight => x < w / 2,
                    Halves::TopBottom => y < h / 2,
                };
                let bright = first_half == (label == 0);
                images.push(if bright { 150 + noise() } else { noise() });
            }
        }
        labels.push(label);
    }
    let class_names = match halves {
        Halves::LeftRight => vec!["left".into(), "right".into()],
        Halves::TopBottom => vec!["top".into(), "bottom".into()],
    };
    ImageDataset {
        name: "halves".into(),
        images,
        labels,
        channels: 1,
        height: h,
        width: w,
        class_names,
    }
}

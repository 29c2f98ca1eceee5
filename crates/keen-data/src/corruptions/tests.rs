//! Tests over the whole corruption table: determinism, shapes, errors and how much each
//! severity changes a fixed set of procedurally drawn images.

use super::*;

/// A 32×32 RGB "photo": smooth colour gradients, a sinusoidal texture and a bright disk
/// on a mid-grey background, so noise, blur and colour corruptions all have something
/// to act on.
fn textured_rgb(h: usize, w: usize, phase: f32) -> Vec<u8> {
    let mut img = vec![0u8; 3 * h * w];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let (fy, fx) = (y as f32 / h as f32, x as f32 / w as f32);
                let wave = (fx * 9.0 + fy * 5.0 + phase + c as f32).sin();
                let (dy, dx) = (fy - 0.55, fx - 0.4);
                let disk = if dy * dy + dx * dx < 0.06 { 70.0 } else { 0.0 };
                let v = 60.0 + 80.0 * fx * (c as f32 * 0.4 + 0.3) + 45.0 * wave + disk + 30.0 * fy;
                img[c * h * w + y * w + x] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}

/// A 28×28 grayscale "digit": bright strokes on a black background, like MNIST.
fn stroke_gray(h: usize, w: usize, tilt: f32) -> Vec<u8> {
    let mut img = vec![0u8; h * w];
    for y in 0..h {
        for x in 0..w {
            let (fy, fx) = (y as f32 / h as f32 - 0.5, x as f32 / w as f32 - 0.5);
            let ring = ((fy * fy + fx * fx).sqrt() - 0.28).abs();
            let bar = (fx - tilt * fy).abs();
            let ink = (1.0 - ring / 0.06)
                .max(0.0)
                .max((1.0 - bar / 0.05).max(0.0) * (fy.abs() < 0.3) as u8 as f32);
            img[y * w + x] = (255.0 * ink.min(1.0)) as u8;
        }
    }
    img
}

/// The fixed test set: two RGB 32×32 and two grayscale 28×28 images.
fn test_images() -> Vec<(Vec<u8>, [usize; 3])> {
    vec![
        (textured_rgb(32, 32, 0.0), [3, 32, 32]),
        (textured_rgb(32, 32, 2.0), [3, 32, 32]),
        (stroke_gray(28, 28, 0.3), [1, 28, 28]),
        (stroke_gray(28, 28, -0.5), [1, 28, 28]),
    ]
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}

/// Mean absolute change in `u8` levels over the test images and three seeds, per severity.
fn change_by_severity(corruption: &Corruption) -> [f64; 5] {
    let images = test_images();
    let mut out = [0.0; 5];
    for (s, severity) in Severity::ALL.into_iter().enumerate() {
        let mut total = 0.0;
        let mut count = 0.0;
        for (i, (img, shape)) in images.iter().enumerate() {
            for seed in 0..3 {
                let corrupted = corruption
                    .apply_u8(img, *shape, severity, seed, i as u64)
                    .expect("corrupts");
                total += mean_abs_diff(img, &corrupted);
                count += 1.0;
            }
        }
        out[s] = total / count;
    }
    out
}

/// Documented range of the mean change (levels) at severity 1 and severity 5, and the
/// severities (1-based pairs `(s, s + 1)`) allowed to decrease, with the reason.
struct Expectation {
    name: &'static str,
    severity1: (f64, f64),
    severity5: (f64, f64),
    may_decrease: &'static [u32],
}

const EXPECTATIONS: &[Expectation] = &[
    expect("gaussian_noise", (4.0, 10.0), (11.0, 22.0), &[]),
    expect("shot_noise", (2.0, 6.0), (8.0, 16.0), &[]),
    expect("impulse_noise", (0.5, 2.5), (6.0, 12.0), &[]),
    expect("defocus_blur", (0.5, 3.0), (6.0, 13.0), &[]),
    // More blur at the same shuffling smooths the shuffled pixels back (CIFAR σ table).
    expect("glass_blur", (12.0, 25.0), (16.0, 30.0), &[2, 4]),
    expect("motion_blur", (5.0, 11.0), (13.0, 26.0), &[]),
    expect("zoom_blur", (2.0, 6.0), (13.0, 25.0), &[]),
    // CIFAR severity 3 raises the flake threshold while adding larger flakes.
    expect("snow", (6.0, 14.0), (32.0, 60.0), &[2]),
    // Severities 4–5 darken the image (keep 0.85, 0.75) about as much as they add frost.
    expect("frost", (16.0, 33.0), (28.0, 52.0), &[3, 4]),
    expect("fog", (9.0, 19.0), (34.0, 62.0), &[]),
    expect("brightness", (9.0, 14.0), (55.0, 76.0), &[]),
    expect("contrast", (7.0, 15.0), (28.0, 48.0), &[]),
    // The affine part shrinks while the elastic part grows (ImageNet-C does the same).
    expect(
        "elastic_transform",
        (14.0, 28.0),
        (9.0, 20.0),
        &[1, 2, 3, 4],
    ),
    // Rounded-down sizes (30, 28, 27 of 32) resample with different phase errors.
    expect("pixelate", (4.0, 9.0), (5.5, 11.0), &[1, 2]),
    expect("jpeg_compression", (1.8, 4.0), (3.5, 7.5), &[]),
];

const fn expect(
    name: &'static str,
    severity1: (f64, f64),
    severity5: (f64, f64),
    may_decrease: &'static [u32],
) -> Expectation {
    Expectation {
        name,
        severity1,
        severity5,
        may_decrease,
    }
}

#[test]
fn the_table_has_the_fifteen_imagenet_c_corruptions_in_order() {
    let names: Vec<&str> = EXPECTATIONS.iter().map(|e| e.name).collect();
    assert_eq!(corruption_names(), names);
    assert_eq!(CORRUPTIONS.len(), 15);
}

#[test]
fn change_grows_with_severity_and_lies_in_the_documented_range() {
    let changes: Vec<[f64; 5]> = CORRUPTIONS.iter().map(change_by_severity).collect();
    // The whole table first, so a failure shows every number at once.
    for (c, change) in CORRUPTIONS.iter().zip(&changes) {
        eprintln!(
            "{:18} {:?}",
            c.name,
            change.map(|v| (v * 10.0).round() / 10.0)
        );
    }
    for ((corruption, expectation), change) in CORRUPTIONS.iter().zip(EXPECTATIONS).zip(&changes) {
        let name = corruption.name;
        let (lo1, hi1) = expectation.severity1;
        let (lo5, hi5) = expectation.severity5;
        assert!(
            (lo1..=hi1).contains(&change[0]),
            "{name}: severity 1 {change:?}"
        );
        assert!(
            (lo5..=hi5).contains(&change[4]),
            "{name}: severity 5 {change:?}"
        );
        for s in 1..5u32 {
            let (before, after) = (change[s as usize - 1], change[s as usize]);
            if !expectation.may_decrease.contains(&s) {
                assert!(
                    after >= before,
                    "{name}: severity {s} → {} decreases: {change:?}",
                    s + 1
                );
            }
        }
        // Even the documented exceptions must not collapse to nothing.
        assert!(change[4] > 0.5 * change[0], "{name}: {change:?}");
    }
}

#[test]
fn every_corruption_is_deterministic_by_seed_and_index() {
    let (img, shape) = &test_images()[0];
    for c in CORRUPTIONS {
        let a = c.apply_u8(img, *shape, Severity::ALL[2], 9, 4).expect("ok");
        let b = c.apply_u8(img, *shape, Severity::ALL[2], 9, 4).expect("ok");
        assert_eq!(a, b, "{}", c.name);
    }
    let noisy = find_corruption("gaussian_noise").expect("known");
    let a = noisy
        .apply_u8(img, *shape, Severity::ALL[0], 9, 4)
        .expect("ok");
    let b = noisy
        .apply_u8(img, *shape, Severity::ALL[0], 9, 5)
        .expect("ok");
    let c = noisy
        .apply_u8(img, *shape, Severity::ALL[0], 10, 4)
        .expect("ok");
    assert_ne!(a, b, "different images get different noise");
    assert_ne!(a, c, "different seeds give different noise");
}

#[test]
fn odd_sizes_keep_their_shape_for_gray_and_rgb() {
    let shapes = [[1, 1, 1], [3, 2, 3], [1, 7, 5], [3, 20, 24], [1, 28, 28]];
    for shape in shapes {
        let len = shape.iter().product::<usize>();
        let img: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
        for c in CORRUPTIONS {
            for severity in Severity::ALL {
                let out = c.apply_u8(&img, shape, severity, 1, 0).expect("ok");
                assert_eq!(out.len(), len, "{} {shape:?}", c.name);
            }
        }
    }
}

#[test]
fn large_images_use_the_imagenet_table_and_still_work() {
    assert_eq!(Profile::for_size(224, 300), Profile::ImageNet);
    assert_eq!(Profile::for_size(32, 32), Profile::Cifar);
    // Corruptions whose change need not grow on a single image and seed (see their docs).
    let erratic = ["glass_blur", "snow", "frost", "fog", "elastic_transform"];
    for side in [112, 224] {
        let img = textured_rgb(side, side, 1.0);
        for c in CORRUPTIONS {
            let change: Vec<f64> = Severity::ALL
                .iter()
                .map(|&s| {
                    let out = c.apply_u8(&img, [3, side, side], s, 0, 0).expect("ok");
                    assert_eq!(out.len(), img.len());
                    mean_abs_diff(&img, &out)
                })
                .collect();
            assert!(change[4] > 0.5, "{} {side}: {change:?}", c.name);
            if !erratic.contains(&c.name) {
                let sorted = change.windows(2).all(|p| p[1] >= p[0] - 0.1);
                assert!(sorted, "{} {side}: {change:?}", c.name);
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let img = vec![0u8; 3 * 4 * 4];
    let err = corrupt_image(&img, [3, 4, 4], "gaussian_noise", 0, 0, 0).expect_err("severity 0");
    assert_eq!(err, CorruptionError::BadSeverity { severity: 0 });
    assert!(err.to_string().contains("1..=5"));
    assert!(corrupt_image(&img, [3, 4, 4], "gaussian_noise", 6, 0, 0).is_err());
    let err = corrupt_image(&img, [3, 4, 4], "rain", 3, 0, 0).expect_err("unknown");
    assert!(
        err.to_string().contains("rain") && err.to_string().contains("frost"),
        "{err}"
    );
    let err = corrupt_image(&img, [3, 4, 5], "fog", 3, 0, 0).expect_err("shape");
    assert!(matches!(
        err,
        CorruptionError::ShapeMismatch { len: 48, .. }
    ));
    let err = corrupt_image(&img[..32], [2, 4, 4], "fog", 3, 0, 0).expect_err("channels");
    assert_eq!(err, CorruptionError::UnsupportedChannels { channels: 2 });
    assert!(Severity::new(5).is_ok());
}

#[test]
fn severity_serialises_as_a_checked_number() {
    let s: Severity = serde_json::from_str("4").expect("valid");
    assert_eq!(s.get(), 4);
    assert_eq!(serde_json::to_string(&s).expect("serialises"), "4");
    assert!(serde_json::from_str::<Severity>("9").is_err());
}

fn small_dataset() -> ImageDataset {
    let images: Vec<u8> = (0..6)
        .flat_map(|i| textured_rgb(12, 10, i as f32))
        .collect();
    ImageDataset {
        name: "toy".into(),
        images,
        labels: vec![0, 1, 0, 1, 1, 0],
        channels: 3,
        height: 12,
        width: 10,
        class_names: vec!["a".into(), "b".into()],
    }
}

#[test]
fn dataset_corruption_matches_per_image_and_ignores_thread_count() {
    let ds = small_dataset();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(|| corrupt_dataset(&ds, "snow", 3, 42).expect("ok"))
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one, two);
    assert_eq!(one.name, "toy-c-snow-3");
    assert_eq!(one.labels, ds.labels);
    assert_eq!(one.images.len(), ds.images.len());
    let snow = find_corruption("snow").expect("known");
    let third = snow
        .apply_u8(ds.image(3), ds.image_shape(), Severity::ALL[2], 42, 3)
        .expect("ok");
    assert_eq!(one.image(3), third.as_slice());
    let mut broken = ds.clone();
    broken.images.pop();
    assert!(corrupt_dataset(&broken, "snow", 3, 42).is_err());
}

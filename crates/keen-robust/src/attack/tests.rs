use proptest::prelude::*;

use super::project::SplitMix64;
use super::toy::{LinearModel, QuantisedInputModel};
use super::*;

/// `classes` Gaussian blobs in `[0, 1]^dim`, `per_class` images each, and the linear model
/// that scores each class by its mean (nearest-mean classifier).
fn blobs(
    classes: usize,
    dim: usize,
    per_class: usize,
    seed: u64,
) -> (LinearModel, Vec<f32>, Vec<u32>) {
    let mut rng = SplitMix64::new(seed);
    let means: Vec<Vec<f32>> = (0..classes)
        .map(|_| (0..dim).map(|_| 0.2 + 0.6 * rng.uniform()).collect())
        .collect();
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for i in 0..classes * per_class {
        let c = i % classes;
        pixels.extend(
            means[c]
                .iter()
                .map(|&m| (m + 0.05 * rng.normal()).clamp(0.0, 1.0)),
        );
        labels.push(c as u32);
    }
    // score_c(x) = 8·(m_c·x − |m_c|²/2): the nearest mean wins.
    let weights = means
        .iter()
        .flat_map(|m| m.iter().map(|&v| 8.0 * v))
        .collect();
    let bias = means
        .iter()
        .map(|m| -4.0 * m.iter().map(|v| v * v).sum::<f32>())
        .collect();
    (LinearModel { weights, bias }, pixels, labels)
}

fn config(kind: AttackKind, norm: Norm, eps: f32) -> AttackConfig {
    AttackConfig {
        steps: 20,
        ..AttackConfig::new(kind, norm, eps)
    }
}

fn distance(a: &[f32], b: &[f32], norm: Norm) -> f32 {
    match norm {
        Norm::Linf => a
            .iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs())),
        Norm::L2 => a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn attacks_stay_in_the_ball_and_the_box(
        seed in 0u64..1000,
        eps in 0.0f32..0.6,
        kind in prop_oneof![Just(AttackKind::Fgsm), Just(AttackKind::Pgd), Just(AttackKind::Apgd)],
        norm in prop_oneof![Just(Norm::Linf), Just(Norm::L2)],
        random_start in any::<bool>(),
    ) {
        let (model, pixels, labels) = blobs(3, 12, 4, seed);
        let eps = if norm == Norm::L2 { 3.0 * eps } else { eps };
        let cfg = AttackConfig { random_start, restarts: 2, seed, ..config(kind, norm, eps) };
        let out = run_attack(&model, &pixels, &labels, &cfg).unwrap();
        for (adv, clean) in out.adversarial.chunks(12).zip(pixels.chunks(12)) {
            prop_assert!(distance(adv, clean, norm) <= eps * (1.0 + 1e-5) + 1e-6);
            prop_assert!(adv.iter().all(|p| (0.0..=1.0).contains(p)));
        }
    }
}

#[test]
fn fgsm_on_a_linear_model_is_the_analytic_step() {
    // Two classes: the gradient of the cross-entropy is (p_y − 1)(w_y − w_o), so FGSM moves
    // by −ε·sign(w_y − w_o) (L∞) or −ε·(w_y − w_o)/|w_y − w_o| (L2).
    let dim = 6;
    let w0 = [0.5f32, -1.0, 2.0, -0.25, 1.5, -3.0];
    let w1 = [-0.5f32, 1.0, 0.5, 0.75, -1.5, 1.0];
    let model = LinearModel {
        weights: w0.iter().chain(&w1).copied().collect(),
        bias: vec![0.1, -0.1],
    };
    let pixels = vec![0.5f32; dim * 2];
    let labels = [0u32, 1];
    for norm in [Norm::Linf, Norm::L2] {
        let eps = if norm == Norm::Linf { 0.1 } else { 0.3 };
        let out = fgsm_images(
            &model,
            &pixels,
            &labels,
            &config(AttackKind::Fgsm, norm, eps),
        )
        .unwrap();
        for (i, &y) in labels.iter().enumerate() {
            let (wy, wo) = if y == 0 { (&w0, &w1) } else { (&w1, &w0) };
            let diff: Vec<f32> = wy.iter().zip(wo).map(|(a, b)| a - b).collect();
            let length = diff.iter().map(|d| d * d).sum::<f32>().sqrt();
            for j in 0..dim {
                let expected = match norm {
                    Norm::Linf => 0.5 - eps * diff[j].signum(),
                    Norm::L2 => 0.5 - eps * diff[j] / length,
                };
                let got = out[i * dim + j];
                assert!(
                    (got - expected).abs() < 1e-5,
                    "{norm} image {i} pixel {j}: {got} vs {expected}"
                );
            }
        }
    }
}

#[test]
fn pgd_is_at_least_as_strong_as_fgsm() {
    let (model, pixels, labels) = blobs(4, 16, 20, 7);
    for norm in [Norm::Linf, Norm::L2] {
        let eps = if norm == Norm::Linf { 0.15 } else { 0.6 };
        let f = run_attack(
            &model,
            &pixels,
            &labels,
            &config(AttackKind::Fgsm, norm, eps),
        )
        .unwrap();
        for kind in [AttackKind::Pgd, AttackKind::Apgd] {
            // From the clean image, like FGSM: PGD's first step is FGSM's with a smaller step.
            let cfg = AttackConfig {
                random_start: false,
                ..config(kind, norm, eps)
            };
            let p = run_attack(&model, &pixels, &labels, &cfg).unwrap();
            let mean = |l: &[f32]| l.iter().sum::<f32>() / l.len() as f32;
            assert!(
                mean(&p.loss) >= mean(&f.loss) - 1e-4,
                "{kind} {norm}: {} < {}",
                mean(&p.loss),
                mean(&f.loss)
            );
            assert!(p.accuracy() <= f.accuracy(), "{kind} {norm}");
        }
    }
}

#[test]
fn restarts_never_lower_the_loss() {
    let (model, pixels, labels) = blobs(3, 10, 10, 3);
    for kind in [AttackKind::Pgd, AttackKind::Apgd] {
        let one = AttackConfig {
            steps: 5,
            seed: 11,
            ..config(kind, Norm::Linf, 0.08)
        };
        let many = AttackConfig {
            restarts: 4,
            ..one.clone()
        };
        let a = run_attack(&model, &pixels, &labels, &one).unwrap();
        let b = run_attack(&model, &pixels, &labels, &many).unwrap();
        for i in 0..labels.len() {
            assert!(
                (b.fooled[i], b.loss[i]) >= (a.fooled[i], a.loss[i]),
                "{kind} image {i}"
            );
        }
        assert!(b.accuracy() <= a.accuracy());
    }
}

#[test]
fn apgd_checkpoints_follow_the_paper() {
    // p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06).
    assert_eq!(apgd_checkpoints(100), vec![22, 41, 57, 70, 80, 87, 93, 99]);
    assert_eq!(apgd_checkpoints(1), vec![1]);
    assert!(apgd_checkpoints(0).is_empty());
}

#[test]
fn apgd_halves_the_step_at_checkpoints_when_the_loss_stalls() {
    // A masked model's loss never rises, so every checkpoint halves the step size.
    let (linear, pixels, labels) = blobs(2, 8, 2, 5);
    let model = QuantisedInputModel {
        linear,
        levels: 4.0,
    };
    let cfg = AttackConfig {
        steps: 100,
        ..config(AttackKind::Apgd, Norm::Linf, 0.2)
    };
    let mut trace = Vec::new();
    apgd::apgd_once(
        &model,
        &pixels,
        &labels,
        &cfg,
        true,
        &mut SplitMix64::new(1),
        Some(&mut trace),
    )
    .unwrap();
    assert_eq!(trace.len(), 100);
    let mut expected = 0.4f32;
    let checkpoints = apgd_checkpoints(100);
    for (i, steps) in trace.iter().enumerate() {
        if checkpoints.contains(&i) {
            expected /= 2.0;
        }
        assert!(
            steps.iter().all(|&s| (s - expected).abs() < 1e-7),
            "iteration {i}: {steps:?} vs {expected}"
        );
    }
}

#[test]
fn apgd_keeps_its_step_while_the_loss_keeps_rising() {
    // A linear model under a large L2 ball: from the clean image, each step raises the loss.
    let model = LinearModel {
        weights: vec![1.0, 0.0, -1.0, 0.0],
        bias: vec![0.0, 0.0],
    };
    let pixels = vec![0.5f32, 0.5];
    let cfg = AttackConfig {
        steps: 10,
        random_start: false,
        ..config(AttackKind::Apgd, Norm::L2, 0.02)
    };
    let mut trace = Vec::new();
    apgd::apgd_once(
        &model,
        &pixels,
        &[0],
        &cfg,
        true,
        &mut SplitMix64::new(1),
        Some(&mut trace),
    )
    .unwrap();
    // The ball is reached at once and then the loss stalls; halving must follow stalls only.
    assert_eq!(trace[0][0], 0.04);
}

fn curve(
    model: &dyn InputGradient,
    pixels: &[f32],
    labels: &[u32],
    kind: AttackKind,
    eps: &[f32],
) -> Vec<EpsPoint> {
    eps.iter()
        .map(|&e| {
            robust_accuracy(
                model,
                pixels,
                labels,
                &config(kind, Norm::Linf, e),
                64,
                &mut |_| {},
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn masking_checks_pass_on_an_honest_model() {
    let (model, pixels, labels) = blobs(3, 16, 40, 9);
    let eps = [0.0, 0.05, 0.1, 0.2, 0.3];
    let pgd_curve = curve(&model, &pixels, &labels, AttackKind::Pgd, &eps);
    let fgsm_curve = curve(&model, &pixels, &labels, AttackKind::Fgsm, &eps);
    let unbounded = curve(&model, &pixels, &labels, AttackKind::Pgd, &[1.0]).remove(0);
    assert!(
        pgd_curve[0].accuracy > 0.9,
        "clean accuracy {}",
        pgd_curve[0].accuracy
    );
    let report = masking_checks(&pgd_curve, &unbounded, &fgsm_curve);
    assert!(!report.suspected, "{report:#?}");
}

#[test]
fn masking_checks_flag_a_model_that_hides_its_gradient() {
    let (linear, pixels, labels) = blobs(3, 16, 40, 9);
    let model = QuantisedInputModel {
        linear,
        levels: 8.0,
    };
    let eps = [0.0, 0.05, 0.1, 0.2, 0.3];
    let pgd_curve = curve(&model, &pixels, &labels, AttackKind::Pgd, &eps);
    let fgsm_curve = curve(&model, &pixels, &labels, AttackKind::Fgsm, &eps);
    let unbounded = curve(&model, &pixels, &labels, AttackKind::Pgd, &[1.0]).remove(0);
    let report = masking_checks(&pgd_curve, &unbounded, &fgsm_curve);
    assert!(report.suspected, "{report:#?}");
    assert_eq!(report.checks[1].passed, Some(false), "{report:#?}");
}

#[test]
fn masking_checks_flag_rising_accuracy_and_a_weak_attack() {
    let point = |eps: f32, accuracy: f64| EpsPoint {
        eps,
        accuracy,
        mean_loss: 0.0,
        images: 1000,
        seconds: 0.0,
    };
    let curve = [point(0.0, 0.99), point(0.1, 0.5), point(0.2, 0.7)];
    let fgsm = [point(0.1, 0.3), point(0.2, 0.7)];
    let report = masking_checks(&curve, &point(1.0, 0.0), &fgsm);
    assert_eq!(report.checks[0].passed, Some(false));
    assert_eq!(report.checks[1].passed, Some(true));
    assert_eq!(report.checks[2].passed, Some(false));
    assert!(report.suspected);
}

#[test]
fn bad_batches_are_errors_not_panics() {
    let (model, pixels, labels) = blobs(2, 4, 2, 1);
    let cfg = config(AttackKind::Pgd, Norm::Linf, 0.1);
    assert!(run_attack(&model, &pixels[1..], &labels, &cfg).is_err());
    assert!(run_attack(&model, &pixels, &[0, 1, 2, 0], &cfg).is_err());
    let mut normalised = pixels.clone();
    normalised[0] = -0.4;
    assert!(run_attack(&model, &normalised, &labels, &cfg).is_err());
    let bad = AttackConfig {
        eps: f32::NAN,
        ..cfg.clone()
    };
    assert!(run_attack(&model, &pixels, &labels, &bad).is_err());
    let bad = AttackConfig { restarts: 0, ..cfg };
    assert!(run_attack(&model, &pixels, &labels, &bad).is_err());
}

#[test]
fn norms_and_kinds_parse() {
    assert_eq!("linf".parse::<Norm>().unwrap(), Norm::Linf);
    assert_eq!("L2".parse::<Norm>().unwrap(), Norm::L2);
    assert!("l1".parse::<Norm>().is_err());
    assert_eq!("apgd".parse::<AttackKind>().unwrap(), AttackKind::Apgd);
    assert!("cw".parse::<AttackKind>().is_err());
    assert_eq!(Norm::L2.unbounded_eps(784), 28.0);
}

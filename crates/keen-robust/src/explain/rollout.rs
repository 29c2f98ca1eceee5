//! Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").
//!
//! Each block's attention is averaged over its heads; the residual connection is accounted
//! for by adding the identity and renormalising the rows, `Â = (A + I) / 2` row-normalised;
//! the blocks are then chained, `R = Â_L · … · Â_1`. Row `i` of `R` says how much of token
//! `i`'s final representation comes from each input token; the class token's row, read at the
//! patch tokens, is the heat map. Every `Â` is row-stochastic, so `R`'s rows sum to 1.

use crate::error::{check_finite, RobustError};

/// One block's attention probabilities for one image: `heads × tokens × tokens`, row-major,
/// each row a distribution over the tokens attended to.
#[derive(Debug, Clone, Copy)]
pub struct AttentionLayer<'a> {
    /// Number of heads (pruned blocks may have fewer than others).
    pub heads: usize,
    /// The probabilities, `[heads, tokens, tokens]`.
    pub probs: &'a [f32],
}

/// The rollout `[tokens, tokens]` (row-major) of `layers`, first block first.
pub fn attention_rollout(
    layers: &[AttentionLayer<'_>],
    tokens: usize,
) -> Result<Vec<f32>, RobustError> {
    if layers.is_empty() {
        return Err(RobustError::Empty {
            what: "attention layers",
        });
    }
    if tokens == 0 {
        return Err(RobustError::InvalidArgument {
            name: "tokens",
            value: "0".into(),
            reason: "attention needs at least one token".into(),
        });
    }
    let n = tokens;
    // Accumulated in f64: a product of many row-stochastic matrices drifts in f32.
    let mut rollout = identity(n);
    for layer in layers {
        let mixed = residual_attention(layer, n)?;
        rollout = matmul(&mixed, &rollout, n);
    }
    Ok(rollout.into_iter().map(|v| v as f32).collect())
}

/// `(mean over heads of A + I)`, rows renormalised to sum to 1.
fn residual_attention(layer: &AttentionLayer<'_>, n: usize) -> Result<Vec<f64>, RobustError> {
    if layer.heads == 0 {
        return Err(RobustError::InvalidArgument {
            name: "heads",
            value: "0".into(),
            reason: "a block needs at least one head".into(),
        });
    }
    if layer.probs.len() != layer.heads * n * n {
        return Err(RobustError::LengthMismatch {
            what: "attention probabilities (heads × tokens × tokens)",
            expected: layer.heads * n * n,
            found: layer.probs.len(),
        });
    }
    check_finite("attention probabilities", layer.probs)?;
    let mut mixed = identity(n);
    for head in layer.probs.chunks_exact(n * n) {
        for (m, &p) in mixed.iter_mut().zip(head) {
            *m += p as f64 / layer.heads as f64;
        }
    }
    for row in mixed.chunks_exact_mut(n) {
        let sum: f64 = row.iter().sum();
        if sum > 0.0 {
            row.iter_mut().for_each(|v| *v /= sum);
        }
    }
    Ok(mixed)
}

fn identity(n: usize) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        m[i * n + i] = 1.0;
    }
    m
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..n {
                out[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    out
}

/// The heat map of `row` (usually 0, the class token) of a `[tokens, tokens]` rollout: its
/// entries at the patch tokens (after `prefix` class/distillation tokens), `grid[0] × grid[1]`
/// row-major.
pub fn patch_map(
    rollout: &[f32],
    tokens: usize,
    row: usize,
    prefix: usize,
    grid: [usize; 2],
) -> Result<Vec<f32>, RobustError> {
    if rollout.len() != tokens * tokens {
        return Err(RobustError::LengthMismatch {
            what: "rollout (tokens × tokens)",
            expected: tokens * tokens,
            found: rollout.len(),
        });
    }
    if prefix + grid[0] * grid[1] != tokens || row >= tokens {
        return Err(RobustError::InvalidArgument {
            name: "grid",
            value: format!("{grid:?} after {prefix} tokens, row {row}"),
            reason: format!("the patches and prefix must make up the {tokens} tokens"),
        });
    }
    Ok(rollout[row * tokens + prefix..(row + 1) * tokens].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn identity_attention_rolls_out_to_the_identity() {
        // Every token attends only to itself: nothing mixes, at any depth.
        let n = 3;
        let eye: Vec<f32> = (0..n * n)
            .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
            .collect();
        let two_heads = [eye.clone(), eye.clone()].concat();
        let layer = AttentionLayer {
            heads: 2,
            probs: &two_heads,
        };
        close(&attention_rollout(&[layer, layer, layer], n).unwrap(), &eye);
    }

    #[test]
    fn uniform_attention_mixes_by_hand_computed_amounts() {
        // Two tokens, uniform attention: Â = ([.5 .5; .5 .5] + I) / 2 = [.75 .25; .25 .75].
        let uniform = [0.5f32; 4];
        let layer = AttentionLayer {
            heads: 1,
            probs: &uniform,
        };
        close(
            &attention_rollout(&[layer], 2).unwrap(),
            &[0.75, 0.25, 0.25, 0.75],
        );
        // Two blocks: Â² = [.625 .375; .375 .625].
        close(
            &attention_rollout(&[layer, layer], 2).unwrap(),
            &[0.625, 0.375, 0.375, 0.625],
        );
        // Heads are averaged before the identity is added: one head on itself and one on the
        // other token average to uniform.
        let split = [1.0f32, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0];
        let two = AttentionLayer {
            heads: 2,
            probs: &split,
        };
        close(
            &attention_rollout(&[two], 2).unwrap(),
            &[0.75, 0.25, 0.25, 0.75],
        );
    }

    #[test]
    fn rollout_rows_sum_to_one() {
        // Pseudo-random softmax rows over 5 tokens, 3 heads, 4 blocks with varying heads.
        let n = 5;
        let mut state = 17u64;
        let mut layer_probs = Vec::new();
        for heads in [3, 1, 2, 3] {
            let mut probs = Vec::new();
            for _ in 0..heads * n {
                let row: Vec<f32> = (0..n)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        ((state >> 33) as f32 / (1u64 << 31) as f32 * 4.0).exp()
                    })
                    .collect();
                let sum: f32 = row.iter().sum();
                probs.extend(row.iter().map(|v| v / sum));
            }
            layer_probs.push((heads, probs));
        }
        let layers: Vec<AttentionLayer> = layer_probs
            .iter()
            .map(|(heads, probs)| AttentionLayer {
                heads: *heads,
                probs,
            })
            .collect();
        let rollout = attention_rollout(&layers, n).unwrap();
        for row in rollout.chunks(n) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
            assert!(row.iter().all(|&v| v >= 0.0));
        }
    }

    #[test]
    fn the_patch_map_skips_the_prefix_tokens() {
        // 1 class token + 2×2 patches.
        let mut rollout = vec![0.0f32; 25];
        rollout[..5].copy_from_slice(&[0.2, 0.1, 0.3, 0.0, 0.4]);
        assert_eq!(
            patch_map(&rollout, 5, 0, 1, [2, 2]).unwrap(),
            vec![0.1, 0.3, 0.0, 0.4]
        );
        assert!(patch_map(&rollout, 5, 0, 2, [2, 2]).is_err());
    }

    #[test]
    fn bad_shapes_are_errors() {
        let probs = [0.5f32; 3];
        let layer = AttentionLayer {
            heads: 1,
            probs: &probs,
        };
        assert!(matches!(
            attention_rollout(&[layer], 2),
            Err(RobustError::LengthMismatch { .. })
        ));
        assert!(attention_rollout(&[], 2).is_err());
        let nan = [f32::NAN; 4];
        let layer = AttentionLayer {
            heads: 1,
            probs: &nan,
        };
        assert!(matches!(
            attention_rollout(&[layer], 2),
            Err(RobustError::NonFinite { .. })
        ));
    }
}

//! Multiply-accumulate counts of the layers keen's models are made of.
//!
//! Counted analytically from the layer shapes (as fvcore and ptflops do), so the count does not
//! depend on a backend. FLOPs are conventionally reported as 2 × MACs.

/// Output size of a convolution or pooling along one axis.
pub fn conv_out(size: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (size + 2 * padding).saturating_sub(kernel) / stride + 1
}

/// MACs of a 2-D convolution producing `out_hw` positions.
pub fn conv2d_macs(
    in_channels: usize,
    out_channels: usize,
    kernel: [usize; 2],
    groups: usize,
    out_hw: [usize; 2],
) -> u64 {
    let per_output = (in_channels / groups) * kernel[0] * kernel[1];
    (per_output * out_channels * out_hw[0] * out_hw[1]) as u64
}

/// MACs of a linear layer applied to `tokens` vectors.
pub fn linear_macs(in_features: usize, out_features: usize, tokens: usize) -> u64 {
    (in_features * out_features * tokens) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_keeps_size_and_stride_halves_it() {
        assert_eq!(conv_out(28, 3, 1, 1), 28);
        assert_eq!(conv_out(28, 3, 2, 1), 14);
        assert_eq!(conv_out(28, 2, 2, 0), 14);
        assert_eq!(conv_out(7, 2, 2, 0), 3);
    }

    #[test]
    fn conv_macs_match_hand_count() {
        // 3x3 conv 1->32 on 28x28: 9 * 32 * 784.
        assert_eq!(conv2d_macs(1, 32, [3, 3], 1, [28, 28]), 9 * 32 * 784);
        // Depthwise 3x3 on 16 channels: 9 * 16 per position.
        assert_eq!(conv2d_macs(16, 16, [3, 3], 16, [7, 7]), 9 * 16 * 49);
    }
}

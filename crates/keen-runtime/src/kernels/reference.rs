//! Plain scalar reference kernels: the definition of what every fast kernel must compute.
//! Slow on purpose (no blocking, no SIMD), so that they are obviously right.

/// `c[m][n] = Σ_k a[m][k] · b[k][n]` with arbitrary strides; `c` is row-major `m×n`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_strides: [usize; 2],
    b: &[f32],
    b_strides: [usize; 2],
    c: &mut [f32],
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for p in 0..k {
                acc += a[i * a_strides[0] + p * a_strides[1]] as f64
                    * b[p * b_strides[0] + j * b_strides[1]] as f64;
            }
            c[i * n + j] = acc as f32;
        }
    }
}

/// `c[m][n] = Σ_k a[m][k] · b[k][n]` for i8 weights `a` (row-major `m×k`) and u8 activations
/// `b` (row-major `k×n`), accumulated exactly in i32.
pub fn qgemm(m: usize, n: usize, k: usize, a: &[i8], b: &[u8]) -> Vec<i32> {
    let mut c = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0i32;
            for p in 0..k {
                acc += a[i * k + p] as i32 * b[p * n + j] as i32;
            }
            c[i * n + j] = acc;
        }
    }
    c
}

/// Shape of a 2-D convolution, shared by the reference and the fast paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Input height and width.
    pub in_hw: [usize; 2],
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride (vertical, horizontal).
    pub stride: [usize; 2],
    /// Padding (top, left, bottom, right).
    pub padding: [usize; 4],
    /// Channel groups.
    pub groups: usize,
}

impl ConvGeometry {
    /// Output height and width, or `None` if the kernel does not fit the padded input or a
    /// stride is zero.
    pub fn out_hw(&self) -> Option<[usize; 2]> {
        let h = self.in_hw[0].checked_add(self.padding[0] + self.padding[2])?;
        let w = self.in_hw[1].checked_add(self.padding[1] + self.padding[3])?;
        let oh = h.checked_sub(self.kernel[0])?.checked_div(self.stride[0])? + 1;
        let ow = w.checked_sub(self.kernel[1])?.checked_div(self.stride[1])? + 1;
        Some([oh, ow])
    }
}

/// Direct convolution, NCHW input, weights `[out, in/groups, kh, kw]`, optional bias.
pub fn conv2d(g: &ConvGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let [oh, ow] = g.out_hw().unwrap_or([0, 0]);
    let [h, w] = g.in_hw;
    let cin_g = g.in_channels / g.groups;
    let cout_g = g.out_channels / g.groups;
    let mut out = vec![0f32; g.batch * g.out_channels * oh * ow];
    for b in 0..g.batch {
        for co in 0..g.out_channels {
            let group = co / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |bias| bias[co] as f64);
                    for ci in 0..cin_g {
                        let c = group * cin_g + ci;
                        for ky in 0..g.kernel[0] {
                            for kx in 0..g.kernel[1] {
                                let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                                let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let x = input
                                    [((b * g.in_channels + c) * h + iy as usize) * w + ix as usize];
                                let wv = weight
                                    [((co * cin_g + ci) * g.kernel[0] + ky) * g.kernel[1] + kx];
                                acc += x as f64 * wv as f64;
                            }
                        }
                    }
                    out[((b * g.out_channels + co) * oh + oy) * ow + ox] = acc as f32;
                }
            }
        }
    }
    out
}

/// Direct integer convolution of u8 activations (with zero point `zero_point`, used for padding)
/// and i8 weights, i32 accumulate, no bias: the reference for the int8 convolution paths.
pub fn qconv2d(g: &ConvGeometry, input: &[u8], zero_point: u8, weight: &[i8]) -> Vec<i32> {
    let [oh, ow] = g.out_hw().unwrap_or([0, 0]);
    let [h, w] = g.in_hw;
    let cin_g = g.in_channels / g.groups;
    let cout_g = g.out_channels / g.groups;
    let mut out = vec![0i32; g.batch * g.out_channels * oh * ow];
    for b in 0..g.batch {
        for co in 0..g.out_channels {
            let group = co / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0i32;
                    for ci in 0..cin_g {
                        let c = group * cin_g + ci;
                        for ky in 0..g.kernel[0] {
                            for kx in 0..g.kernel[1] {
                                let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                                let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                                let x = if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize
                                {
                                    zero_point
                                } else {
                                    input[((b * g.in_channels + c) * h + iy as usize) * w
                                        + ix as usize]
                                };
                                let wv = weight
                                    [((co * cin_g + ci) * g.kernel[0] + ky) * g.kernel[1] + kx];
                                acc += x as i32 * wv as i32;
                            }
                        }
                    }
                    out[((b * g.out_channels + co) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    out
}

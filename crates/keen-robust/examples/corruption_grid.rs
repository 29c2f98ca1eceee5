//! Renders every corruption at every severity of one image as a PNG grid (rows:
//! corruptions in ImageNet-C order; columns: clean, severities 1–5).
//!
//! ```sh
//! cargo run --release -p keen-robust --example corruption_grid -- [IN.png|jpg] OUT.png [SCALE]
//! ```
//! Without an input image it uses a 32×32 procedural test pattern; a number instead of
//! `IN` gives the pattern at that side (e.g. `224` to see the ImageNet-C table).

use std::process::ExitCode;

use keen_robust::charts::png::{corruption_grid, encode_png};

fn test_pattern(side: usize) -> Vec<u8> {
    let mut img = vec![0u8; 3 * side * side];
    for c in 0..3 {
        for y in 0..side {
            for x in 0..side {
                let (fy, fx) = (y as f32 / side as f32, x as f32 / side as f32);
                let wave = (fx * 9.0 + fy * 5.0 + c as f32).sin();
                let disk = if (fy - 0.55).powi(2) + (fx - 0.4).powi(2) < 0.06 {
                    70.0
                } else {
                    0.0
                };
                let v = 60.0 + 80.0 * fx * (c as f32 * 0.4 + 0.3) + 45.0 * wave + disk + 30.0 * fy;
                img[c * side * side + y * side + x] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (input, output, scale) = match args.as_slice() {
        [out] => (None, out.clone(), 4),
        [inp, out] => (Some(inp.clone()), out.clone(), 4),
        [inp, out, s] => (Some(inp.clone()), out.clone(), s.parse().unwrap_or(4)),
        _ => {
            eprintln!("usage: corruption_grid [IN.png] OUT.png [SCALE]");
            return ExitCode::FAILURE;
        }
    };
    let (pixels, shape) = match input {
        None => (test_pattern(32), [3, 32, 32]),
        Some(side) if side.parse::<usize>().is_ok_and(|s| s > 0) => {
            let side = side.parse().unwrap_or(32);
            (test_pattern(side), [3, side, side])
        }
        Some(path) => match image::open(&path) {
            Ok(img) => {
                let rgb = img.to_rgb8();
                let (w, h) = (rgb.width() as usize, rgb.height() as usize);
                let raw = rgb.into_raw();
                // HWC → CHW.
                let chw = (0..3 * h * w)
                    .map(|k| raw[(k % (h * w)) * 3 + k / (h * w)])
                    .collect();
                (chw, [3, h, w])
            }
            Err(e) => {
                eprintln!("{path}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let result = corruption_grid(&pixels, shape, 0, scale).and_then(|grid| encode_png(&grid));
    match result.map(|bytes| std::fs::write(&output, bytes)) {
        Ok(Ok(())) => {
            println!("wrote {output}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("{output}: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

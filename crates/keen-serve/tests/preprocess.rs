//! Serving preprocesses an image exactly as training and `keen predict` do: keen-data's
//! image-folder reader (decode, channels, resize and centre-crop, normalise).

use std::io::Cursor;

use keen_data::folder::{load_image, ColorMode, FolderOptions};
use keen_data::loader::Normalization;
use keen_serve::InputSpec;

fn spec(channels: usize, height: usize, width: usize) -> InputSpec {
    InputSpec {
        shape: vec![channels, height, width],
        mean: vec![0.3; channels],
        std: vec![0.2; channels],
        normalization_stored: true,
        class_names: vec!["a".into()],
    }
}

/// A colourful, non-square test picture with detail at every scale.
fn picture(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width) as u8,
            (y * 255 / height) as u8,
            ((x * 7 + y * 13) % 256) as u8,
        ])
    })
}

#[test]
fn images_match_keen_data_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (ColorMode::Gray, 28, 28, 100, 60, image::ImageFormat::Png),
        (ColorMode::Rgb, 32, 32, 45, 90, image::ImageFormat::Png),
        (ColorMode::Gray, 28, 28, 28, 28, image::ImageFormat::Jpeg),
        (ColorMode::Rgb, 16, 24, 640, 480, image::ImageFormat::Jpeg),
    ];
    for (i, (color, h, w, pw, ph, format)) in cases.into_iter().enumerate() {
        let mut bytes = Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(picture(pw, ph))
            .write_to(&mut bytes, format)
            .unwrap();
        let bytes = bytes.into_inner();
        let path = dir.path().join(format!("img{i}.bin"));
        std::fs::write(&path, &bytes).unwrap();

        let options = FolderOptions {
            color,
            height: h,
            width: w,
        };
        let pixels = load_image(&path, &options).unwrap();
        let s = spec(color.channels(), h, w);
        let normalization = Normalization {
            mean: s.mean.clone(),
            std: s.std.clone(),
        };
        let mut expected = vec![0.0f32; pixels.len()];
        normalization.apply(&pixels, &mut expected);

        let served = s.image_from_bytes(&bytes, 4096).unwrap();
        assert_eq!(served.len(), expected.len(), "case {i}");
        let worst = served
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "case {i}: differs by {worst}");
    }
}

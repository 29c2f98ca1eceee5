//! [`InputSpec`]: what one request must become before it joins a batch, read from the model
//! file's metadata, and the two ways a body gets there: a PNG/JPEG image or a raw tensor.
//!
//! Images get the evaluation transform of keen-data's image-folder reader
//! (`keen_data::folder`): decoded, converted to the model's channels (grey with ITU-R 601
//! weights, or RGB with alpha dropped), resized so the shorter side fits (bilinear) and
//! centre-cropped, then normalised per channel as `(x / 255 - mean) / std` with the statistics
//! stored in the model file. The resize, crop and grey conversion are keen-data's own
//! (`keen_data::folder::image_to_chw`), so served and training images agree bit for bit.

use std::io::Cursor;

use image::ImageFormat;
use keen_data::folder::{image_to_chw, ColorMode};
use keen_runtime::Model;
use serde::Serialize;

use crate::error::{InputError, ServeError};

/// The shape of one input (batch axis excluded), its normalisation and the class names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputSpec {
    /// Per-request input shape, e.g. `[1, 28, 28]`.
    pub shape: Vec<usize>,
    /// Per-channel mean in `[0, 1]` units (applied to images only).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation in `[0, 1]` units (applied to images only).
    pub std: Vec<f32>,
    /// Whether the mean and std came from the model file (false: none stored, `x / 255` only).
    pub normalization_stored: bool,
    /// Class names, index = logit; `class N` where the file stores none.
    pub class_names: Vec<String>,
}

impl InputSpec {
    /// Reads the spec from a model's declared input and metadata. `num_classes` is the width of
    /// its output (known from a warm-up run).
    pub fn from_model(model: &Model, num_classes: usize) -> Result<Self, ServeError> {
        let [declared] = model.input_shapes() else {
            return Err(ServeError::UnsupportedModel(format!(
                "it has {} inputs; a served model has one",
                model.input_shapes().len()
            )));
        };
        let shape: Option<Vec<usize>> = declared.iter().skip(1).copied().collect();
        let shape = match (declared.first(), shape) {
            (Some(_), Some(shape)) if !shape.is_empty() => shape,
            _ => {
                return Err(ServeError::UnsupportedModel(format!(
                    "its input shape {declared:?} is not a batch axis followed by fixed sizes"
                )))
            }
        };
        let channels = if shape.len() == 3 { shape[0] } else { 1 };
        let (mean, std, stored) = match model.normalization() {
            Some(n) => {
                if n.mean.len() != channels || n.std.len() != channels {
                    return Err(ServeError::UnsupportedModel(format!(
                        "its normalisation has {} means and {} stds for {channels} channels",
                        n.mean.len(),
                        n.std.len()
                    )));
                }
                if n.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                    return Err(ServeError::UnsupportedModel(format!(
                        "its normalisation std {:?} is not positive",
                        n.std
                    )));
                }
                (n.mean.clone(), n.std.clone(), true)
            }
            None => (vec![0.0; channels], vec![1.0; channels], false),
        };
        let stored_names = model.class_names();
        let class_names = if stored_names.len() == num_classes {
            stored_names.to_vec()
        } else {
            (0..num_classes).map(|i| format!("class {i}")).collect()
        };
        Ok(Self {
            shape,
            mean,
            std,
            normalization_stored: stored,
            class_names,
        })
    }

    /// Values in one input.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether one input holds no values (never, for a validated spec).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(channels, height, width)` when the model takes 1- or 3-channel images.
    pub fn image_dims(&self) -> Option<(usize, usize, usize)> {
        match self.shape[..] {
            [c @ (1 | 3), h, w] if h > 0 && w > 0 => Some((c, h, w)),
            _ => None,
        }
    }

    /// A raw tensor body: exactly [`InputSpec::len`] little-endian f32, already normalised
    /// (what the model's input takes, as is).
    pub fn tensor_from_bytes(&self, bytes: &[u8]) -> Result<Vec<f32>, InputError> {
        let values = self.len();
        if bytes.len() != values * 4 {
            return Err(InputError::TensorSize {
                expected: values * 4,
                values,
                shape: self.shape.clone(),
                found: bytes.len(),
            });
        }
        let data: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        match data.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(InputError::NonFinite(i)),
            None => Ok(data),
        }
    }

    /// A PNG or JPEG body (the format is read from the bytes, not trusted from the header):
    /// decoded, converted, resized, cropped and normalised into the model's input.
    pub fn image_from_bytes(&self, bytes: &[u8], max_side: u32) -> Result<Vec<f32>, InputError> {
        let (channels, height, width) = self
            .image_dims()
            .ok_or_else(|| InputError::NotAnImageModel(self.shape.clone()))?;
        let pixels = decode_image(bytes, channels, height as u32, width as u32, max_side)?;
        Ok(self.normalize(&pixels))
    }

    /// `(x / 255 - mean[c]) / std[c]` over CHW bytes, as keen-data normalises.
    pub fn normalize(&self, chw: &[u8]) -> Vec<f32> {
        let plane = chw.len() / self.mean.len().max(1);
        let mut out = Vec::with_capacity(chw.len());
        for (c, src) in chw.chunks(plane.max(1)).enumerate() {
            let scale = 1.0 / (255.0 * self.std[c]);
            let shift = self.mean[c] / self.std[c];
            out.extend(src.iter().map(|&v| v as f32 * scale - shift));
        }
        out
    }
}

/// Decodes a PNG or JPEG to CHW bytes of `channels` (1 or 3) at `height x width`.
pub fn decode_image(
    bytes: &[u8],
    channels: usize,
    height: u32,
    width: u32,
    max_side: u32,
) -> Result<Vec<u8>, InputError> {
    if bytes.is_empty() {
        return Err(InputError::Empty);
    }
    let bad = |e: image::ImageError| InputError::BadImage(e.to_string());
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| InputError::BadImage(e.to_string()))?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {}
        _ => return Err(InputError::BadImage("not a PNG or JPEG".into())),
    }
    let (w, h) = reader.into_dimensions().map_err(bad)?;
    if w > max_side || h > max_side {
        return Err(InputError::ImageTooLarge {
            width: w,
            height: h,
            limit: max_side,
        });
    }
    if w == 0 || h == 0 {
        return Err(InputError::BadImage(
            "image has zero width or height".into(),
        ));
    }
    // `into_dimensions` consumed the reader; decoding starts again from the bytes, with the
    // size already known to be acceptable.
    reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| InputError::BadImage(e.to_string()))?;
    let img = reader.decode().map_err(bad)?;
    let color = if channels == 1 {
        ColorMode::Gray
    } else {
        ColorMode::Rgb
    };
    Ok(image_to_chw(&img, color, height, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shape: Vec<usize>) -> InputSpec {
        let c = if shape.len() == 3 { shape[0] } else { 1 };
        InputSpec {
            shape,
            mean: vec![0.5; c],
            std: vec![0.25; c],
            normalization_stored: true,
            class_names: vec!["a".into(), "b".into()],
        }
    }

    fn png(img: &image::DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn raw_tensor_needs_the_exact_size_and_finite_values() {
        let s = spec(vec![1, 2, 2]);
        let ok: Vec<u8> = [1.0f32, -2.0, 0.5, 3.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(s.tensor_from_bytes(&ok).unwrap(), vec![1.0, -2.0, 0.5, 3.0]);
        assert!(matches!(
            s.tensor_from_bytes(&ok[..12]),
            Err(InputError::TensorSize { expected: 16, .. })
        ));
        let mut nan = ok.clone();
        nan[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(s.tensor_from_bytes(&nan), Err(InputError::NonFinite(2)));
    }

    #[test]
    fn images_are_resized_cropped_and_normalised() {
        // 8x4 white-on-left, black-on-right RGB: the 4x4 centre crop after fitting 4 rows.
        let mut img = image::RgbImage::new(8, 4);
        for (x, _, p) in img.enumerate_pixels_mut() {
            *p = if x < 4 {
                image::Rgb([255, 255, 255])
            } else {
                image::Rgb([0, 0, 0])
            };
        }
        let s = spec(vec![1, 4, 4]);
        let out = s
            .image_from_bytes(&png(&image::DynamicImage::ImageRgb8(img)), 64)
            .unwrap();
        assert_eq!(out.len(), 16);
        // Left half white: (1 - 0.5) / 0.25 = 2; right half black: -2.
        assert_eq!(out[0], 2.0);
        assert_eq!(out[3], -2.0);
    }

    #[test]
    fn bad_images_are_errors() {
        let s = spec(vec![3, 4, 4]);
        assert_eq!(s.image_from_bytes(&[], 64), Err(InputError::Empty));
        assert!(matches!(
            s.image_from_bytes(b"not an image at all", 64),
            Err(InputError::BadImage(_))
        ));
        let big = png(&image::DynamicImage::new_rgb8(65, 2));
        assert!(matches!(
            s.image_from_bytes(&big, 64),
            Err(InputError::ImageTooLarge { width: 65, .. })
        ));
        let mut truncated = png(&image::DynamicImage::new_rgb8(16, 16));
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(
            s.image_from_bytes(&truncated, 64),
            Err(InputError::BadImage(_))
        ));
        let flat = spec(vec![12]);
        assert!(matches!(
            flat.image_from_bytes(&big, 64),
            Err(InputError::NotAnImageModel(_))
        ));
    }
}

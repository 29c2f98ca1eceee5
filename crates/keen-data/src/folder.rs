//! Image folders: `ROOT/CLASS/*.png|jpg|jpeg`, one sub-folder per class.
//!
//! Classes are the sub-folder names sorted, so label numbering does not depend on the
//! file system's listing order. Every image is decoded, converted to the requested
//! colour mode, resized so its shorter side fits and centre-cropped to the target size,
//! the usual evaluation transform, so images of any size can be mixed.

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{ImageBuffer, Pixel};
use rayon::prelude::*;

use crate::dataset::ImageDataset;
use crate::error::DataError;

/// Extensions (lower case) of the files an image folder contributes; others are skipped.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The colour mode images are converted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMode {
    /// One channel (luma, ITU-R 601 weights as in PIL).
    Gray,
    /// Three channels, R, G, B; alpha is dropped.
    Rgb,
}

impl ColorMode {
    /// Channels this mode produces.
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Gray => 1,
            ColorMode::Rgb => 3,
        }
    }
}

/// How an image folder is turned into fixed-size tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolderOptions {
    /// Colour mode of the output.
    pub color: ColorMode,
    /// Output height in pixels.
    pub height: usize,
    /// Output width in pixels.
    pub width: usize,
}

impl Default for FolderOptions {
    /// RGB 32x32: CIFAR's shape, the size keen's small models are built around.
    fn default() -> Self {
        FolderOptions {
            color: ColorMode::Rgb,
            height: 32,
            width: 32,
        }
    }
}

/// Class names and image files of a folder, without decoding anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderListing {
    /// Sorted class (sub-folder) names.
    pub class_names: Vec<String>,
    /// Every image file with its class index, sorted by class then file name.
    pub files: Vec<(PathBuf, u32)>,
}

/// Lists the classes and image files under `root` (hidden entries are skipped).
pub fn list_image_folder(root: &Path) -> Result<FolderListing, DataError> {
    let mut class_dirs: Vec<(String, PathBuf)> = read_dir_sorted(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| visible_name(&p).map(|n| (n, p)))
        .collect();
    class_dirs.sort();
    let mut files = Vec::new();
    for (label, (_, dir)) in class_dirs.iter().enumerate() {
        for path in read_dir_sorted(dir)? {
            if path.is_file() && visible_name(&path).is_some() && has_image_extension(&path) {
                files.push((path, label as u32));
            }
        }
    }
    Ok(FolderListing {
        class_names: class_dirs.into_iter().map(|(n, _)| n).collect(),
        files,
    })
}

/// Reads an image folder into memory, decoding images in parallel.
///
/// Errors: [`DataError::NoImages`] when no image files are found, and
/// [`DataError::Image`] naming the first file (in sorted order) that fails to decode.
pub fn read_image_folder(root: &Path, opts: &FolderOptions) -> Result<ImageDataset, DataError> {
    if opts.height == 0 || opts.width == 0 {
        return Err(DataError::Malformed {
            path: root.to_path_buf(),
            reason: format!(
                "requested image size {}x{} is empty",
                opts.height, opts.width
            ),
        });
    }
    let listing = list_image_folder(root)?;
    if listing.files.is_empty() {
        return Err(DataError::NoImages {
            path: root.to_path_buf(),
        });
    }
    // Decode everything, then report the first failure in sorted order, so the error a
    // user sees does not depend on thread scheduling.
    let decoded: Vec<Result<Vec<u8>, DataError>> = listing
        .files
        .par_iter()
        .map(|(path, _)| load_image(path, opts))
        .collect();
    let image_len = opts.color.channels() * opts.height * opts.width;
    let mut images = Vec::with_capacity(listing.files.len() * image_len);
    for pixels in decoded {
        images.extend_from_slice(&pixels?);
    }
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "folder".to_string());
    Ok(ImageDataset {
        name,
        images,
        labels: listing.files.iter().map(|(_, l)| *l).collect(),
        channels: opts.color.channels(),
        height: opts.height,
        width: opts.width,
        class_names: listing.class_names,
    })
}

/// Decodes one image file into CHW bytes of the requested mode and size.
pub fn load_image(path: &Path, opts: &FolderOptions) -> Result<Vec<u8>, DataError> {
    let image_err = |reason: String| DataError::Image {
        path: path.to_path_buf(),
        reason,
    };
    let img = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        // Trust the content over the extension: a PNG saved as .jpg still loads.
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(|e| image_err(e.to_string()))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(image_err("image has zero width or height".to_string()));
    }
    Ok(image_to_chw(
        &img,
        opts.color,
        opts.height as u32,
        opts.width as u32,
    ))
}

/// A decoded image as CHW bytes of `color` and `height × width`: resized so it covers the
/// size, centre-cropped, grey by ITU-R 601. Everything that feeds images to a keen model
/// (training folders, `keen serve`) prepares them here, so that they agree bit for bit.
pub fn image_to_chw(
    img: &image::DynamicImage,
    color: ColorMode,
    height: u32,
    width: u32,
) -> Vec<u8> {
    let rgb = img.to_rgb8();
    match color {
        ColorMode::Gray => to_chw(&resize_center_crop(&luma_601(&rgb), height, width)),
        ColorMode::Rgb => to_chw(&resize_center_crop(&rgb, height, width)),
    }
}

/// Grayscale with ITU-R 601 weights, PIL's and torchvision's convention (the `image`
/// crate's `to_luma8` uses Rec. 709, which makes red 30% darker than Python tooling
/// would, so numbers would not match recipes trained there).
fn luma_601(rgb: &image::RgbImage) -> image::GrayImage {
    let mut gray = image::GrayImage::new(rgb.width(), rgb.height());
    for (g, p) in gray.pixels_mut().zip(rgb.pixels()) {
        let [r, gr, b] = p.0.map(u32::from);
        g.0[0] = ((299 * r + 587 * gr + 114 * b + 500) / 1000) as u8;
    }
    gray
}

/// Scales so the image covers `h x w` (the shorter side fits), then crops the centre.
fn resize_center_crop<P>(img: &ImageBuffer<P, Vec<u8>>, h: u32, w: u32) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8> + 'static,
{
    let (iw, ih) = img.dimensions();
    let scale = f64::max(h as f64 / ih as f64, w as f64 / iw as f64);
    // Rounding can land one pixel short of the target; never go below it.
    let rw = ((iw as f64 * scale).round() as u32).max(w);
    let rh = ((ih as f64 * scale).round() as u32).max(h);
    let resized;
    let src = if (rw, rh) == (iw, ih) {
        img
    } else {
        // Triangle (bilinear) widens its support when shrinking, so it also
        // anti-aliases large photos brought down to 32x32.
        resized = imageops::resize(img, rw, rh, FilterType::Triangle);
        &resized
    };
    imageops::crop_imm(src, (rw - w) / 2, (rh - h) / 2, w, h).to_image()
}

/// Interleaved HWC pixels to planar CHW.
fn to_chw<P>(img: &ImageBuffer<P, Vec<u8>>) -> Vec<u8>
where
    P: Pixel<Subpixel = u8>,
{
    let c = P::CHANNEL_COUNT as usize;
    let hwc = img.as_raw();
    let plane = hwc.len() / c;
    let mut chw = vec![0u8; hwc.len()];
    for (i, px) in hwc.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            chw[ch * plane + i] = v;
        }
    }
    chw
}

/// The entries of a folder, sorted by path.
fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        paths.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    paths.sort();
    Ok(paths)
}

/// The file name, unless it is hidden (dot files such as `.DS_Store` or `.ipynb_checkpoints`).
fn visible_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    (!name.starts_with('.')).then_some(name)
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgb};

    #[test]
    fn chw_layout_puts_each_channel_in_its_own_plane() {
        let img = ImageBuffer::from_fn(2, 1, |x, _| Rgb([x as u8, 10 + x as u8, 20 + x as u8]));
        assert_eq!(to_chw(&img), vec![0, 1, 10, 11, 20, 21]);
    }

    #[test]
    fn resize_covers_then_crops_the_centre() {
        // A 4x2 image with a bright centre column pair keeps it after cropping to 2x2.
        let img = ImageBuffer::from_fn(4, 2, |x, _| Luma([if x == 1 || x == 2 { 200 } else { 0 }]));
        let out = resize_center_crop(&img, 2, 2);
        assert_eq!(out.dimensions(), (2, 2));
        assert!(out.pixels().all(|p| p.0[0] == 200));
        // Upscaling a small image still yields the target size.
        let up = resize_center_crop(&img, 5, 3);
        assert_eq!(up.dimensions(), (3, 5));
    }

    #[test]
    fn extensions_match_case_insensitively() {
        assert!(has_image_extension(Path::new("a/B.JPG")));
        assert!(has_image_extension(Path::new("a/b.jpeg")));
        assert!(!has_image_extension(Path::new("a/b.txt")));
        assert!(!has_image_extension(Path::new("a/png")));
    }
}

//! Image folders: mixed formats and sizes, colour modes, bad files, split layouts.

use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use keen_data::folder::{read_image_folder, ColorMode, FolderOptions};
use keen_data::source::SearchEnv;
use keen_data::{DataError, DataLocator, DatasetSpec, SplitName};

fn solid_rgb(path: &Path, w: u32, h: u32, color: [u8; 3]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    RgbImage::from_pixel(w, h, Rgb(color))
        .save(path)
        .expect("save rgb");
}

fn solid_gray(path: &Path, w: u32, h: u32, v: u8) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    GrayImage::from_pixel(w, h, Luma([v]))
        .save(path)
        .expect("save gray");
}

/// cat: a red 40x20 PNG and a green 16x16 JPEG; dog: a gray 10x30 PNG and an RGBA PNG;
/// plus files and folders that must be ignored.
fn make_folder(root: &Path) {
    solid_rgb(&root.join("cat/a.png"), 40, 20, [255, 0, 0]);
    solid_rgb(&root.join("cat/b.JPG"), 16, 16, [0, 255, 0]);
    solid_gray(&root.join("dog/c.png"), 10, 30, 200);
    RgbaImage::from_pixel(9, 9, Rgba([0, 0, 255, 128]))
        .save(root.join("dog/d.png"))
        .expect("save rgba");
    std::fs::write(root.join("dog/notes.txt"), "not an image").expect("txt");
    std::fs::write(root.join("dog/.e.png"), "hidden, never decoded").expect("hidden");
    solid_gray(&root.join(".cache/x.png"), 4, 4, 1);
    std::fs::write(root.join("README"), "a file at the root is not a class").expect("readme");
}

#[test]
fn rgb_folder_is_resized_cropped_and_labelled_by_sorted_class() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_folder(tmp.path());
    let opts = FolderOptions {
        color: ColorMode::Rgb,
        height: 8,
        width: 6,
    };
    let ds = read_image_folder(tmp.path(), &opts).expect("folder");
    assert_eq!(ds.class_names, vec!["cat", "dog"]);
    assert_eq!(ds.labels, vec![0, 0, 1, 1]);
    assert_eq!(ds.image_shape(), [3, 8, 6]);
    ds.validate(tmp.path()).expect("valid");
    let plane = 8 * 6;
    // Solid colours survive resizing exactly in the lossless PNG.
    let red = ds.image(0);
    assert!(red[..plane].iter().all(|&v| v == 255) && red[plane..].iter().all(|&v| v == 0));
    // JPEG is lossy: green dominates but need not be exact.
    let green = ds.image(1);
    assert!(
        green[plane..2 * plane].iter().all(|&v| v > 240) && green[..plane].iter().all(|&v| v < 15)
    );
    // Gray becomes equal channels.
    assert!(ds.image(2).iter().all(|&v| v == 200));
}

#[test]
fn gray_folder_converts_colour_to_luma() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_folder(tmp.path());
    let opts = FolderOptions {
        color: ColorMode::Gray,
        height: 5,
        width: 5,
    };
    let ds = read_image_folder(tmp.path(), &opts).expect("folder");
    assert_eq!(ds.image_shape(), [1, 5, 5]);
    assert_eq!(ds.images.len(), 4 * 25);
    // Luma of pure red is 0.299 * 255 = 76.
    assert!(
        ds.image(0).iter().all(|&v| v.abs_diff(76) <= 1),
        "{:?}",
        ds.image(0)
    );
    assert!(ds.image(2).iter().all(|&v| v == 200));
}

#[test]
fn corrupt_image_is_an_error_naming_that_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_folder(tmp.path());
    let bad = tmp.path().join("dog/broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not really a png").expect("write");
    let err = read_image_folder(tmp.path(), &FolderOptions::default()).expect_err("corrupt");
    assert!(matches!(err, DataError::Image { .. }), "{err:?}");
    assert_eq!(err.path(), Some(bad.as_path()));
    assert!(err.to_string().contains("broken.png"), "{err}");
}

#[test]
fn folder_without_images_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tmp.path().join("empty_class")).expect("mkdir");
    let err = read_image_folder(tmp.path(), &FolderOptions::default()).expect_err("empty");
    assert!(matches!(err, DataError::NoImages { .. }), "{err:?}");
    let missing = tmp.path().join("nope");
    let err = read_image_folder(&missing, &FolderOptions::default()).expect_err("missing");
    assert_eq!(err.path(), Some(missing.as_path()));
}

#[test]
fn folder_spec_loads_train_and_test_with_shared_labels() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for class in ["ant", "bee", "cow"] {
        solid_gray(&tmp.path().join(format!("train/{class}/1.png")), 12, 12, 10);
    }
    // The test split lacks `ant`, so its sorted index of `bee` would be 0, not 1.
    solid_gray(&tmp.path().join("test/bee/1.png"), 12, 12, 20);
    solid_gray(&tmp.path().join("test/cow/1.png"), 12, 12, 30);
    let spec: DatasetSpec = format!("folder:{}", tmp.path().display())
        .parse()
        .expect("spec");
    let loc = DataLocator::default();
    let env = SearchEnv::default();
    let train = loc.load_in(&spec, SplitName::Train, &env).expect("train");
    let test = loc.load_in(&spec, SplitName::Test, &env).expect("test");
    assert_eq!(train.image_shape(), spec.image_shape());
    assert_eq!(train.labels, vec![0, 1, 2]);
    assert_eq!(test.labels, vec![1, 2]);
    assert_eq!(test.class_names, train.class_names);
    assert_eq!(spec.class_names(), vec!["ant", "bee", "cow"]);
}

#[test]
fn flat_folder_has_no_test_split_and_says_how_to_add_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    solid_gray(&tmp.path().join("a/1.png"), 4, 4, 1);
    let spec = DatasetSpec::Folder(tmp.path().to_path_buf());
    let loc = DataLocator::default();
    let env = SearchEnv::default();
    assert_eq!(
        loc.load_in(&spec, SplitName::Train, &env)
            .expect("train")
            .len(),
        1
    );
    let err = loc
        .load_in(&spec, SplitName::Test, &env)
        .expect_err("no test");
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("test/CLASS"), "{err}");
    let missing = DatasetSpec::Folder(tmp.path().join("missing"));
    let err = loc.locate_in(&missing, &env).expect_err("missing folder");
    assert!(err.to_string().contains("missing"), "{err}");
}

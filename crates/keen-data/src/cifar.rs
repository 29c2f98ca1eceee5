//! The binary versions of CIFAR-10 and CIFAR-100.
//!
//! CIFAR-10 files (`data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`) are
//! records of 1 label byte + 3072 pixel bytes; CIFAR-100 files (`train.bin`,
//! `test.bin`) are records of a coarse label byte, a fine label byte and 3072 pixel
//! bytes. The pixels are already 3x32x32 CHW (R plane, G plane, B plane), which is our
//! layout, so they are copied as is. Files may be gzipped.

use std::path::Path;

use crate::dataset::ImageDataset;
use crate::error::DataError;
use crate::gzip::read_maybe_gzip;

/// Pixel bytes per CIFAR image: 3 channels x 32 x 32.
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;

/// CIFAR-10 class names, indexed by label.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// CIFAR-100 coarse (superclass) names, indexed by coarse label.
pub const CIFAR100_COARSE_CLASSES: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// CIFAR-100 fine class names, indexed by fine label (alphabetical, as in `meta`).
pub const CIFAR100_FINE_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// Which of CIFAR-100's two label sets becomes the dataset's label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cifar100Labels {
    /// The 100 fine classes.
    Fine,
    /// The 20 superclasses.
    Coarse,
}

/// Reads and concatenates CIFAR-10 binary files, in the order given.
pub fn read_cifar10_bin<P: AsRef<Path>>(paths: &[P]) -> Result<ImageDataset, DataError> {
    let classes = CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
    let mut ds = empty_dataset("cifar10", classes);
    for path in paths {
        // Record: [label, pixels...]
        append_records(&mut ds, path.as_ref(), 1, |rec| (rec[0], 10))?;
    }
    Ok(ds)
}

/// Reads and concatenates CIFAR-100 binary files, keeping the fine or coarse label.
/// Both labels are range-checked whichever is kept, since either being wrong means
/// the file is not what it claims to be.
pub fn read_cifar100_bin<P: AsRef<Path>>(
    paths: &[P],
    which: Cifar100Labels,
) -> Result<ImageDataset, DataError> {
    let classes: Vec<String> = match which {
        Cifar100Labels::Fine => CIFAR100_FINE_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Cifar100Labels::Coarse => CIFAR100_COARSE_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let mut ds = empty_dataset("cifar100", classes);
    for path in paths {
        let path = path.as_ref();
        // Record: [coarse, fine, pixels...]
        append_records(&mut ds, path, 2, |rec| {
            let (coarse, fine) = (rec[0], rec[1]);
            if coarse as usize >= CIFAR100_COARSE_CLASSES.len() {
                return (coarse, CIFAR100_COARSE_CLASSES.len());
            }
            match which {
                Cifar100Labels::Fine => (fine, CIFAR100_FINE_CLASSES.len()),
                Cifar100Labels::Coarse if fine as usize >= CIFAR100_FINE_CLASSES.len() => {
                    (fine, CIFAR100_FINE_CLASSES.len())
                }
                Cifar100Labels::Coarse => (coarse, CIFAR100_COARSE_CLASSES.len()),
            }
        })?;
    }
    Ok(ds)
}

fn empty_dataset(name: &str, class_names: Vec<String>) -> ImageDataset {
    ImageDataset {
        name: name.to_string(),
        images: Vec::new(),
        labels: Vec::new(),
        channels: 3,
        height: 32,
        width: 32,
        class_names,
    }
}

/// Appends every record of one file. `label_of` gets the record's label bytes and
/// returns `(label, limit)`: the label to keep, or the first bad one with the bound it
/// broke.
fn append_records(
    ds: &mut ImageDataset,
    path: &Path,
    label_bytes: usize,
    label_of: impl Fn(&[u8]) -> (u8, usize),
) -> Result<(), DataError> {
    let bytes = read_maybe_gzip(path)?;
    let record = label_bytes + CIFAR_IMAGE_BYTES;
    if bytes.len() % record != 0 {
        return Err(DataError::BadRecordLength {
            path: path.to_path_buf(),
            length_bytes: bytes.len() as u64,
            record_bytes: record as u64,
        });
    }
    let n = bytes.len() / record;
    ds.images.reserve(n * CIFAR_IMAGE_BYTES);
    ds.labels.reserve(n);
    for (index, rec) in bytes.chunks_exact(record).enumerate() {
        let (label, limit) = label_of(&rec[..label_bytes]);
        if label as usize >= limit {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                index,
                label: label.into(),
                num_classes: limit,
            });
        }
        ds.labels.push(label.into());
        ds.images.extend_from_slice(&rec[label_bytes..]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_tables_have_the_published_sizes_and_are_unique() {
        let mut fine = CIFAR100_FINE_CLASSES.to_vec();
        fine.sort_unstable();
        fine.dedup();
        assert_eq!(fine.len(), 100);
        // The fine names are alphabetical in CIFAR-100's `meta`, so ours must be too.
        assert_eq!(fine, CIFAR100_FINE_CLASSES.to_vec());
        assert_eq!(CIFAR100_COARSE_CLASSES.len(), 20);
    }
}

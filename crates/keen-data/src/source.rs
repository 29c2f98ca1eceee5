//! Named datasets: what they are called, which files they consist of, and where
//! those files come from.
//!
//! Finding the files on disk (and, optionally, downloading them) is in [`DataLocator`];
//! this file is the catalogue it works from.

mod download;
mod locate;

pub use download::{sha256_bytes, sha256_file, verify_checksums};
pub use locate::{load_from_dir, DataLocator, DatasetStatus, SearchEnv};

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::cifar::CIFAR10_CLASSES;
use crate::error::DataError;
use crate::folder::{list_image_folder, FolderOptions};

/// Which dataset to use, as given on the command line (`--dataset`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DatasetSpec {
    /// Zalando's Fashion-MNIST: 28x28 grayscale clothing, 10 classes. keen's default.
    FashionMnist,
    /// LeCun's MNIST digits: 28x28 grayscale, 10 classes.
    Mnist,
    /// CIFAR-10, binary version: 32x32 RGB, 10 classes.
    Cifar10,
    /// An image folder `PATH/CLASS/*.png|jpg|jpeg`, or `PATH/{train,test}/CLASS/...`.
    Folder(PathBuf),
}

/// The names [`DatasetSpec::from_str`] accepts, for help texts and errors.
pub const DATASET_NAMES: [&str; 4] = ["fashion-mnist", "mnist", "cifar10", "folder:PATH"];

impl DatasetSpec {
    /// Every dataset known by name (everything except folders).
    pub fn named() -> [DatasetSpec; 3] {
        [
            DatasetSpec::FashionMnist,
            DatasetSpec::Mnist,
            DatasetSpec::Cifar10,
        ]
    }

    /// Short name: `fashion-mnist`, `mnist`, `cifar10`, or a folder's last component.
    pub fn name(&self) -> String {
        match self {
            DatasetSpec::Folder(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "folder".to_string()),
            named => catalog(named).map_or_else(String::new, |c| c.name.to_string()),
        }
    }

    /// Class names, indexed by label. For a folder these are its sorted sub-folder
    /// names (of `train/` when it has one), or empty when it cannot be read.
    pub fn class_names(&self) -> Vec<String> {
        match self {
            DatasetSpec::FashionMnist => FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            DatasetSpec::Mnist => (0..10).map(|d| d.to_string()).collect(),
            DatasetSpec::Cifar10 => CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
            DatasetSpec::Folder(path) => {
                let train = path.join("train");
                let root = if train.is_dir() { train } else { path.clone() };
                list_image_folder(&root)
                    .map(|l| l.class_names)
                    .unwrap_or_default()
            }
        }
    }

    /// `[C, H, W]` of the images [`DataLocator::load`] produces; folders load as
    /// [`FolderOptions::default`] (RGB 32x32).
    pub fn image_shape(&self) -> [usize; 3] {
        match self {
            DatasetSpec::FashionMnist | DatasetSpec::Mnist => [1, 28, 28],
            DatasetSpec::Cifar10 => [3, 32, 32],
            DatasetSpec::Folder(_) => {
                let o = FolderOptions::default();
                [o.color.channels(), o.height, o.width]
            }
        }
    }
}

impl FromStr for DatasetSpec {
    type Err = DataError;

    /// Parses `fashion-mnist`, `mnist`, `cifar10` (case-insensitive, `_` for `-` and a
    /// few common spellings accepted) or `folder:PATH`.
    fn from_str(s: &str) -> Result<Self, DataError> {
        if let Some(path) = s.strip_prefix("folder:") {
            if path.is_empty() {
                return Err(DataError::BadSpec(
                    "`folder:` needs a path, e.g. folder:/data/pets".to_string(),
                ));
            }
            return Ok(DatasetSpec::Folder(PathBuf::from(path)));
        }
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "fashion-mnist" | "fashionmnist" | "fmnist" => Ok(DatasetSpec::FashionMnist),
            "mnist" => Ok(DatasetSpec::Mnist),
            "cifar10" | "cifar-10" => Ok(DatasetSpec::Cifar10),
            _ => Err(DataError::BadSpec(format!(
                "unknown dataset `{s}`; valid: {}",
                DATASET_NAMES.join(", ")
            ))),
        }
    }
}

impl fmt::Display for DatasetSpec {
    /// The form [`DatasetSpec::from_str`] parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetSpec::Folder(path) => write!(f, "folder:{}", path.display()),
            named => f.write_str(&named.name()),
        }
    }
}

/// Which official split to load. Validation sets are carved from `Train` by
/// [`crate::split::train_val_split`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SplitName {
    /// The training split.
    Train,
    /// The held-out test split.
    Test,
}

impl fmt::Display for SplitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SplitName::Train => "train",
            SplitName::Test => "test",
        })
    }
}

impl FromStr for SplitName {
    type Err = DataError;

    /// Parses `train` or `test`.
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(SplitName::Train),
            "test" => Ok(SplitName::Test),
            _ => Err(DataError::BadSpec(format!(
                "unknown split `{s}`; valid: train, test"
            ))),
        }
    }
}

/// Fashion-MNIST class names, indexed by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// How a named dataset's files are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileFormat {
    /// One IDX image file and one IDX label file per split.
    Idx,
    /// CIFAR-10 binary batches.
    Cifar10Bin,
}

/// One file of a named dataset, by its uncompressed name.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DataFile {
    /// File name without `.gz`; the `.gz` version is accepted too.
    pub name: &'static str,
    /// SHA-256 of the uncompressed file, where published.
    pub sha256: Option<&'static str>,
}

/// Everything keen knows about a named dataset.
#[derive(Debug)]
pub(crate) struct CatalogEntry {
    pub name: &'static str,
    pub format: FileFormat,
    /// Files of the training split (IDX: images then labels).
    pub train: &'static [DataFile],
    /// Files of the test split (IDX: images then labels).
    pub test: &'static [DataFile],
    /// Sub-folders of a user data folder that may hold the files (common layouts:
    /// our own name, torchvision's, the extracted archive's).
    pub user_subdirs: &'static [&'static str],
    /// Sub-folders of the dataset's own cache folder (an archive extracted in place).
    pub nested: &'static [&'static str],
    /// Folder under the system dataset root (`/usr/share/datasets`) a distribution
    /// package installs into.
    pub system_dir: Option<&'static str>,
    /// URL prefix the `.gz` files can be downloaded from.
    pub download_base: Option<&'static str>,
    /// How to get the files by hand.
    pub hint: &'static str,
}

impl CatalogEntry {
    /// Files of one split.
    pub fn split_files(&self, split: SplitName) -> &'static [DataFile] {
        match split {
            SplitName::Train => self.train,
            SplitName::Test => self.test,
        }
    }

    /// Files of every split.
    pub fn all_files(&self) -> impl Iterator<Item = &'static DataFile> {
        self.train.iter().chain(self.test)
    }
}

const fn checked(name: &'static str, sha256: &'static str) -> DataFile {
    DataFile {
        name,
        sha256: Some(sha256),
    }
}

const fn unchecked(name: &'static str) -> DataFile {
    DataFile { name, sha256: None }
}

/// Zalando's published location. S3 *website* endpoints serve plain HTTP only (HTTPS
/// fails the TLS handshake); integrity comes from the SHA-256 check, not the transport.
const FASHION_MNIST_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";
const MNIST_URL: &str = "https://storage.googleapis.com/cvdf-datasets/mnist/";
/// Where the CIFAR-10 binary archive is published.
pub const CIFAR10_ARCHIVE_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

static FASHION_MNIST: CatalogEntry = CatalogEntry {
    name: "fashion-mnist",
    format: FileFormat::Idx,
    train: &[
        checked(
            "train-images-idx3-ubyte",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        checked(
            "train-labels-idx1-ubyte",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
    ],
    test: &[
        checked(
            "t10k-images-idx3-ubyte",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        checked(
            "t10k-labels-idx1-ubyte",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    ],
    user_subdirs: &["fashion-mnist", "fashion_mnist", "FashionMNIST/raw"],
    nested: &[],
    system_dir: Some("fashion-mnist"),
    download_base: Some(FASHION_MNIST_URL),
    hint: "To get Fashion-MNIST, either\n  \
        - install the Debian/Ubuntu package: sudo apt-get install dataset-fashion-mnist\n  \
        - or download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n    \
        t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from\n    \
        http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ into a folder DIR,\n    \
        then pass --data DIR or set KEEN_DATA=DIR (gzipped or unpacked both work).",
};

static MNIST: CatalogEntry = CatalogEntry {
    name: "mnist",
    format: FileFormat::Idx,
    train: &[
        checked(
            "train-images-idx3-ubyte",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        checked(
            "train-labels-idx1-ubyte",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
    ],
    test: &[
        checked(
            "t10k-images-idx3-ubyte",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        checked(
            "t10k-labels-idx1-ubyte",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ],
    user_subdirs: &["mnist", "MNIST/raw"],
    nested: &[],
    system_dir: Some("mnist"),
    download_base: Some(MNIST_URL),
    hint: "To get MNIST, download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n  \
        t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from\n  \
        https://storage.googleapis.com/cvdf-datasets/mnist/ into a folder DIR,\n  \
        then pass --data DIR or set KEEN_DATA=DIR (gzipped or unpacked both work).",
};

static CIFAR10: CatalogEntry = CatalogEntry {
    name: "cifar10",
    format: FileFormat::Cifar10Bin,
    train: &[
        unchecked("data_batch_1.bin"),
        unchecked("data_batch_2.bin"),
        unchecked("data_batch_3.bin"),
        unchecked("data_batch_4.bin"),
        unchecked("data_batch_5.bin"),
    ],
    test: &[unchecked("test_batch.bin")],
    user_subdirs: &[
        "cifar10",
        "cifar-10-batches-bin",
        "cifar10/cifar-10-batches-bin",
    ],
    nested: &["cifar-10-batches-bin"],
    system_dir: None,
    download_base: None,
    hint: "To get CIFAR-10, download\n  \
        https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and extract it:\n  \
        tar xzf cifar-10-binary.tar.gz -C DIR\n  \
        (this creates DIR/cifar-10-batches-bin/ with data_batch_1.bin .. data_batch_5.bin\n  \
        and test_batch.bin), then pass --data DIR or set KEEN_DATA=DIR.",
};

/// The catalogue entry of a named dataset (`None` for folders).
pub(crate) fn catalog(spec: &DatasetSpec) -> Option<&'static CatalogEntry> {
    match spec {
        DatasetSpec::FashionMnist => Some(&FASHION_MNIST),
        DatasetSpec::Mnist => Some(&MNIST),
        DatasetSpec::Cifar10 => Some(&CIFAR10),
        DatasetSpec::Folder(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_display() {
        for spec in DatasetSpec::named() {
            let parsed: DatasetSpec = spec.to_string().parse().expect("round trip");
            assert_eq!(parsed, spec);
            assert_eq!(spec.class_names().len(), 10);
        }
        let folder: DatasetSpec = "folder:/data/pets".parse().expect("folder");
        assert_eq!(folder, DatasetSpec::Folder("/data/pets".into()));
        assert_eq!(folder.to_string(), "folder:/data/pets");
        assert_eq!(folder.name(), "pets");
        assert_eq!(
            "FASHION_MNIST".parse::<DatasetSpec>().ok(),
            Some(DatasetSpec::FashionMnist)
        );
    }

    #[test]
    fn catalogue_hashes_are_well_formed() {
        for spec in DatasetSpec::named() {
            let entry = catalog(&spec).expect("named");
            for f in entry.all_files() {
                if let Some(h) = f.sha256 {
                    assert_eq!(h.len(), 64, "{}", f.name);
                    assert!(h.bytes().all(|b| b.is_ascii_hexdigit()), "{}", f.name);
                }
            }
        }
    }

    #[test]
    fn split_names_parse() {
        assert_eq!("Train".parse::<SplitName>().ok(), Some(SplitName::Train));
        assert_eq!(SplitName::Test.to_string(), "test");
        assert!(matches!(
            "val".parse::<SplitName>(),
            Err(DataError::BadSpec(_))
        ));
    }
}

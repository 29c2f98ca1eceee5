//! The out-of-distribution sets `keen robust ood --ood` names, resolved into datasets before
//! any model runs: other datasets, the in-distribution test images under severe corruptions,
//! and pure noise.

use std::path::Path;

use anyhow::{bail, Context, Result};
use keen_data::corruptions::{corrupt_dataset, find_corruption};
use keen_data::dataset::ImageDataset;
use keen_data::noise_images::{noise_dataset, NoiseKind};
use keen_data::source::SplitName;

use super::load_split;

/// The corruptions `corrupted` mixes, one of each family (noise, blur, weather, digital), so the
/// set is not dominated by one kind of damage.
pub const DEFAULT_CORRUPTIONS: [&str; 4] = ["gaussian_noise", "motion_blur", "fog", "contrast"];

/// Outlier Exposure's Gaussian noise: `N(0.5, 1)` per pixel, clipped.
const GAUSSIAN_NOISE_STD: f32 = 1.0;

/// One OOD set as the user named it.
#[derive(Clone, Debug, PartialEq)]
pub enum OodSetSpec {
    /// The test split of a dataset keen can load (`mnist`, `folder:PATH`, ...).
    Dataset(String),
    /// The in-distribution test images, image `i` under corruption `i mod k` of these.
    Corrupted(Vec<String>),
    /// Noise images.
    Noise(NoiseKind),
}

impl OodSetSpec {
    /// Parses one `--ood` item; `noise` stands for two sets, so this returns a list.
    pub fn parse(item: &str) -> Result<Vec<(String, OodSetSpec)>> {
        let item = item.trim();
        let gaussian = NoiseKind::Gaussian {
            std: GAUSSIAN_NOISE_STD,
        };
        Ok(match item {
            "" => bail!("--ood: empty set name"),
            "noise" => vec![
                (
                    NoiseKind::Uniform.name().into(),
                    Self::Noise(NoiseKind::Uniform),
                ),
                (gaussian.name().into(), Self::Noise(gaussian)),
            ],
            "uniform-noise" => vec![(item.into(), Self::Noise(NoiseKind::Uniform))],
            "gaussian-noise" => vec![(item.into(), Self::Noise(gaussian))],
            "corrupted" => vec![(
                item.into(),
                Self::Corrupted(DEFAULT_CORRUPTIONS.iter().map(|s| s.to_string()).collect()),
            )],
            _ => match item.strip_prefix("corrupted:") {
                Some(name) => {
                    find_corruption(name)?;
                    vec![(item.into(), Self::Corrupted(vec![name.to_string()]))]
                }
                None => vec![(item.into(), Self::Dataset(item.into()))],
            },
        })
    }

    /// A sentence for the report.
    pub fn describe(&self, in_distribution: &str, severity: u32) -> String {
        match self {
            Self::Dataset(name) => format!("{name} test split"),
            Self::Corrupted(names) => format!(
                "{in_distribution} test images, image i under corruption i mod {} of [{}] at \
                 severity {severity}",
                names.len(),
                names.join(", ")
            ),
            Self::Noise(NoiseKind::Uniform) => {
                "uniform noise, every 8-bit value equally likely".into()
            }
            Self::Noise(NoiseKind::Gaussian { std }) => {
                format!("Gaussian noise N(0.5, {std}²) per pixel, clipped to [0, 1]")
            }
        }
    }
}

/// Everything the OOD sets are built from.
pub struct SetContext<'a> {
    /// The in-distribution test images (already limited).
    pub in_test: &'a ImageDataset,
    /// Folder of named OOD datasets.
    pub ood_data: Option<&'a Path>,
    /// At most this many images per set.
    pub limit: usize,
    /// Severity of the corruptions.
    pub severity: u32,
    /// Seed of corruptions and noise.
    pub seed: u64,
}

/// Builds one OOD set's images.
pub fn build_set(spec: &OodSetSpec, ctx: &SetContext<'_>) -> Result<ImageDataset> {
    let shape = ctx.in_test.image_shape();
    let set = match spec {
        OodSetSpec::Dataset(name) => {
            let data = load_split(name, ctx.ood_data, SplitName::Test)
                .with_context(|| format!("loading the OOD set '{name}' (--ood-data DIR)"))?;
            let count = ctx.limit.min(data.len());
            data.subset(&(0..count).collect::<Vec<_>>())
        }
        OodSetSpec::Corrupted(names) => {
            let mut parts = Vec::with_capacity(names.len());
            for (k, name) in names.iter().enumerate() {
                let indices: Vec<usize> = (k..ctx.in_test.len()).step_by(names.len()).collect();
                if indices.is_empty() {
                    continue;
                }
                let part = ctx.in_test.subset(&indices);
                parts.push(corrupt_dataset(&part, name, ctx.severity, ctx.seed)?);
            }
            concatenate(parts, &format!("{}-corrupted", ctx.in_test.name))?
        }
        OodSetSpec::Noise(kind) => noise_dataset(*kind, ctx.limit, shape, ctx.seed),
    };
    if set.image_shape() != shape {
        bail!(
            "the OOD set '{}' has {:?} images but the model takes {:?}",
            set.name,
            set.image_shape(),
            shape
        );
    }
    if set.is_empty() {
        bail!("the OOD set '{}' has no images", set.name);
    }
    Ok(set)
}

/// The images of `parts` (all of one shape) back to back.
fn concatenate(parts: Vec<ImageDataset>, name: &str) -> Result<ImageDataset> {
    let mut parts = parts.into_iter();
    let Some(mut all) = parts.next() else {
        bail!("no images to corrupt");
    };
    for part in parts {
        all.images.extend(part.images);
        all.labels.extend(part.labels);
    }
    all.name = name.to_string();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keen_data::toy::{halves_dataset, Halves};

    #[test]
    fn names_expand_into_sets() {
        let sets: Vec<String> = ["mnist", "corrupted", "noise", "corrupted:fog", "folder:./x"]
            .iter()
            .flat_map(|s| OodSetSpec::parse(s).unwrap())
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            sets,
            [
                "mnist",
                "corrupted",
                "uniform-noise",
                "gaussian-noise",
                "corrupted:fog",
                "folder:./x"
            ]
        );
        assert!(OodSetSpec::parse("corrupted:no-such").is_err());
        assert!(OodSetSpec::parse(" ").is_err());
    }

    #[test]
    fn corrupted_and_noise_sets_keep_the_shape_and_the_count() {
        let test = halves_dataset(10, 0, Halves::LeftRight);
        let ctx = SetContext {
            in_test: &test,
            ood_data: None,
            limit: 7,
            severity: 5,
            seed: 1,
        };
        let corrupted = build_set(
            &OodSetSpec::Corrupted(DEFAULT_CORRUPTIONS.iter().map(|s| s.to_string()).collect()),
            &ctx,
        )
        .unwrap();
        assert_eq!(
            (corrupted.len(), corrupted.image_shape()),
            (10, [1, 12, 12])
        );
        assert_ne!(corrupted.images, test.images);
        let noise = build_set(&OodSetSpec::Noise(NoiseKind::Uniform), &ctx).unwrap();
        assert_eq!((noise.len(), noise.image_shape()), (7, [1, 12, 12]));
    }
}

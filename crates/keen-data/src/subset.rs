//! A labelled subset of a training split, for semi-supervised learning (FixMatch's
//! "N labels per class" protocol).
//!
//! The subset is stratified — exactly N images of every class — because with 100 labels per
//! class a plain random draw would leave classes short by chance and the comparison between
//! supervised and semi-supervised training would measure the draw. It is chosen from the
//! training indices the caller passes (what is left after the validation split), so labelled,
//! unlabelled and validation images are disjoint, and it is a pure function of the indices,
//! the labels and the seed.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::dataset::ImageDataset;
use crate::error::DataError;

/// Keeps the subset's shuffle apart from the validation split's, which uses the plain seed.
const SUBSET_STREAM: u64 = 0x6c61_6265_6c73; // "labels"

/// A training split divided into labelled and unlabelled images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledSplit {
    /// `per_class` images of every class, sorted ascending.
    pub labelled: Vec<usize>,
    /// The rest of the training indices, sorted ascending (their labels are for reporting
    /// pseudo-label accuracy only).
    pub unlabelled: Vec<usize>,
}

/// Picks `per_class` images of every class of `ds` from `train` (dataset positions), drawn
/// uniformly by `seed`; the other positions of `train` become the unlabelled set.
///
/// Fails with [`DataError::TooFewLabelled`] when a class has fewer than `per_class` images in
/// `train`.
pub fn labelled_subset(
    ds: &ImageDataset,
    train: &[usize],
    per_class: usize,
    seed: u64,
) -> Result<LabelledSplit, DataError> {
    let mut order = train.to_vec();
    // Sorting first makes the draw independent of the order the caller passes.
    order.sort_unstable();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ SUBSET_STREAM));
    let mut taken = vec![0usize; ds.num_classes()];
    let (mut labelled, mut unlabelled) = (Vec::new(), Vec::new());
    for i in order {
        let class = ds.labels[i] as usize;
        if taken[class] < per_class {
            taken[class] += 1;
            labelled.push(i);
        } else {
            unlabelled.push(i);
        }
    }
    if let Some((class, &available)) = taken.iter().enumerate().find(|(_, &n)| n < per_class) {
        return Err(DataError::TooFewLabelled {
            dataset: ds.name.clone(),
            class: ds.class_names[class].clone(),
            available,
            wanted: per_class,
        });
    }
    labelled.sort_unstable();
    unlabelled.sort_unstable();
    Ok(LabelledSplit {
        labelled,
        unlabelled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::train_val_split;

    /// 3 classes with unequal counts: class c has 40 + 10c images.
    fn uneven_dataset() -> ImageDataset {
        let labels: Vec<u32> = (0..3u32)
            .flat_map(|c| std::iter::repeat_n(c, 40 + 10 * c as usize))
            .collect();
        ImageDataset {
            name: "uneven".into(),
            images: vec![0; labels.len()],
            labels,
            channels: 1,
            height: 1,
            width: 1,
            class_names: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    #[test]
    fn picks_exactly_n_per_class_disjoint_from_validation_and_unlabelled() {
        let ds = uneven_dataset();
        let (train, val) = train_val_split(ds.len(), 0.2, 3);
        let split = labelled_subset(&ds, &train, 7, 3).expect("enough images");
        for class in 0..3u32 {
            let n = split
                .labelled
                .iter()
                .filter(|&&i| ds.labels[i] == class)
                .count();
            assert_eq!(n, 7, "class {class}");
        }
        assert_eq!(split.labelled.len() + split.unlabelled.len(), train.len());
        for i in &split.labelled {
            assert!(
                !split.unlabelled.contains(i),
                "{i} is labelled and unlabelled"
            );
            assert!(!val.contains(i), "{i} is labelled and in validation");
        }
        for i in &split.unlabelled {
            assert!(!val.contains(i), "{i} is unlabelled and in validation");
        }
        let mut all: Vec<usize> = split
            .labelled
            .iter()
            .chain(&split.unlabelled)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, train);
    }

    #[test]
    fn the_draw_is_a_function_of_the_seed() {
        let ds = uneven_dataset();
        let (train, _) = train_val_split(ds.len(), 0.2, 3);
        let a = labelled_subset(&ds, &train, 5, 11).expect("subset");
        let reversed: Vec<usize> = train.iter().rev().copied().collect();
        assert_eq!(a, labelled_subset(&ds, &reversed, 5, 11).expect("subset"));
        let others: Vec<_> = (12..16)
            .map(|seed| labelled_subset(&ds, &train, 5, seed).expect("subset"))
            .collect();
        assert!(others.iter().any(|b| b.labelled != a.labelled));
    }

    #[test]
    fn a_short_class_is_an_error_that_names_it() {
        let ds = uneven_dataset();
        let all: Vec<usize> = (0..ds.len()).collect();
        let err = labelled_subset(&ds, &all, 45, 1).expect_err("class a has 40 images");
        assert!(err.to_string().contains("class 'a' has 40"), "{err}");
        let split = labelled_subset(&ds, &all, 40, 1).expect("exactly enough");
        assert_eq!(split.labelled.len(), 120);
    }
}

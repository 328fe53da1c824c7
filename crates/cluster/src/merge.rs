//! Merging replicas' answers to one `Select`: series by label set, and the
//! samples of a series present on several replicas by timestamp, so that a
//! sample acknowledged by any replica that answered is seen exactly once.

use std::collections::BTreeMap;

use strata_common::ServiceError;
use strata_common::chunk::SAMPLES_PER_CHUNK;
use strata_proto::prometheus::{Chunk, Histogram, Label, chunk::Encoding};
use strata_proto::store::SelectedSeries;

/// Merges several nodes' answers (each sorted by labels) into one answer
/// sorted by labels.
pub fn merge_selected(
    answers: Vec<Vec<SelectedSeries>>,
) -> Result<Vec<SelectedSeries>, ServiceError> {
    if answers.len() == 1 {
        return Ok(answers.into_iter().next().unwrap_or_default());
    }
    let mut by_labels: BTreeMap<Vec<(String, String)>, Vec<SelectedSeries>> = BTreeMap::new();
    for answer in answers {
        for series in answer {
            let key = series
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            by_labels.entry(key).or_default().push(series);
        }
    }
    by_labels.into_values().map(merge_series).collect()
}

/// One series from its copies on several replicas.
fn merge_series(mut copies: Vec<SelectedSeries>) -> Result<SelectedSeries, ServiceError> {
    let first_is_everything = copies
        .iter()
        .all(|c| c.chunks == copies[0].chunks && c.histograms == copies[0].histograms);
    if first_is_everything {
        // The usual case: replicas that saw the same writes hold the same chunks.
        return Ok(copies.swap_remove(0));
    }
    let labels: Vec<Label> = copies[0].labels.clone();
    let mut floats: Vec<(i64, f64)> = Vec::new();
    let mut histograms: Vec<Histogram> = Vec::new();
    for copy in copies {
        for chunk in &copy.chunks {
            strata_common::compact_chunk::decode_any(chunk.r#type, &chunk.data, &mut floats)
                .map_err(|e| {
                    ServiceError::internal(format!("corrupt chunk from a replica: {e}"))
                })?;
        }
        histograms.extend(copy.histograms);
    }
    // Stable: of equal timestamps the first replica's sample wins.
    floats.sort_by_key(|&(t, _)| t);
    floats.dedup_by_key(|&mut (t, _)| t);
    histograms.sort_by_key(|h| h.timestamp);
    histograms.dedup_by_key(|h| h.timestamp);
    Ok(SelectedSeries {
        labels,
        chunks: xor_chunks(&floats),
        histograms,
    })
}

/// Samples (sorted, unique timestamps) as Prometheus XOR chunks.
fn xor_chunks(samples: &[(i64, f64)]) -> Vec<Chunk> {
    let encoded = strata_common::chunk::encode_all(samples);
    samples
        .chunks(SAMPLES_PER_CHUNK)
        .zip(encoded)
        .map(|(batch, data)| Chunk {
            min_time_ms: batch[0].0,
            max_time_ms: batch[batch.len() - 1].0,
            r#type: Encoding::Xor as i32,
            data,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_common::labels::label;

    fn series(name: &str, samples: &[(i64, f64)]) -> SelectedSeries {
        SelectedSeries {
            labels: vec![label("__name__", name)],
            chunks: xor_chunks(samples),
            histograms: Vec::new(),
        }
    }

    fn samples_of(series: &SelectedSeries) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        for chunk in &series.chunks {
            strata_common::compact_chunk::decode_any(chunk.r#type, &chunk.data, &mut out)
                .expect("decodes");
        }
        out
    }

    #[test]
    fn replicas_missing_different_samples_merge_to_the_union() {
        let a = vec![series("x", &[(1, 1.0), (3, 3.0)]), series("y", &[(1, 9.0)])];
        let b = vec![series("x", &[(1, 1.0), (2, 2.0), (4, 4.0)])];
        let merged = merge_selected(vec![a, b]).expect("merge");
        assert_eq!(merged.len(), 2);
        assert_eq!(
            samples_of(&merged[0]),
            vec![(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]
        );
        assert_eq!(samples_of(&merged[1]), vec![(1, 9.0)]);
    }

    #[test]
    fn identical_replicas_pass_through_unchanged() {
        let samples: Vec<(i64, f64)> = (0..500).map(|i| (i * 15_000, i as f64)).collect();
        let a = vec![series("x", &samples)];
        let merged = merge_selected(vec![a.clone(), a.clone(), a.clone()]).expect("merge");
        assert_eq!(merged, a);
    }

    proptest::proptest! {
        #[test]
        fn merge_equals_union_of_timestamps(
            a in proptest::collection::btree_set(0i64..200, 0..60),
            b in proptest::collection::btree_set(0i64..200, 0..60),
        ) {
            let to_samples = |set: &std::collections::BTreeSet<i64>| -> Vec<(i64, f64)> {
                set.iter().map(|&t| (t, t as f64 * 0.5)).collect()
            };
            let merged = merge_selected(vec![
                vec![series("x", &to_samples(&a))],
                vec![series("x", &to_samples(&b))],
            ]).expect("merge");
            let union: std::collections::BTreeSet<i64> = a.union(&b).copied().collect();
            let got: Vec<(i64, f64)> = merged.iter().flat_map(samples_of).collect();
            proptest::prop_assert_eq!(got, to_samples(&union));
        }
    }
}

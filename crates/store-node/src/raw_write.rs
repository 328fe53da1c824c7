//! The local engine's remote-write path over a request read in place
//! ([`RawWrite`]): series the head knows are found by their raw label
//! bytes, so only new series are validated and get owned labels. In
//! steady state that is almost none, and a series costs a hash of bytes
//! already in cache and one comparison with the head's packed labels.

use std::borrow::Cow;

use strata_common::SeriesValidator;
use strata_common::raw_write::{RawSeries, RawWrite};
use strata_common::service::Refusals;
use strata_proto::prometheus::Label;

use crate::hash::packed_labels_hash;
use crate::head::Head;
use crate::packed_labels::PackedLabels;
use crate::tenant_db::{Incoming, SeriesKey, TenantDb, TenantDbError, WriteOutcome, plan_write};

/// How a series of the request is known to the planner.
#[derive(Debug)]
enum Resolved {
    Known(u32),
    /// Not in the head (or not as sent): validated, with canonical labels.
    New(Vec<Label>),
    Invalid,
}

impl TenantDb {
    /// Writes `request`'s valid series; returns the write's outcome and
    /// the series `validator` refused.
    pub fn write_raw(
        &self,
        request: &RawWrite,
        validator: &dyn SeriesValidator,
    ) -> Result<(WriteOutcome, Refusals), TenantDbError> {
        let mut invalid = Refusals::default();
        // Resolved under the head's read lock only: validating new series
        // does not hold up the tenant's other writes, which wait for the
        // WAL lock (and its fsync).
        let resolved = resolve_all(&self.head.read(), request, validator, &mut invalid);
        let outcome = self.write_resolved(request, resolved, validator, &mut invalid)?;
        Ok((outcome, invalid))
    }

    /// Writes `request`, its series resolved beforehand (`resolved`, in
    /// request order) while other writes went on; refusals go to `invalid`.
    fn write_resolved(
        &self,
        request: &RawWrite,
        resolved: Vec<Resolved>,
        validator: &dyn SeriesValidator,
        invalid: &mut Refusals,
    ) -> Result<WriteOutcome, TenantDbError> {
        self.write_planned(|head, bounds| {
            let incoming = request
                .iter()
                .zip(resolved)
                .enumerate()
                .filter_map(|(index, (series, resolved))| {
                    let resolved = match resolved {
                        // Cut away since it was found (its data all in
                        // blocks): ids are never reused, so only a missing
                        // one needs another look, as a new series.
                        Resolved::Known(id) if head.series(id).is_none() => {
                            resolve(index, series, None, validator, invalid)
                        }
                        resolved => resolved,
                    };
                    match resolved {
                        Resolved::Known(id) => Some((series, SeriesKey::Known(id))),
                        Resolved::New(labels) => {
                            Some((series, SeriesKey::Labels(Cow::Owned(labels))))
                        }
                        Resolved::Invalid => None,
                    }
                })
                // Indexes count the valid series, as in a `WriteRequest`.
                .enumerate()
                .map(|(index, (series, key))| Incoming {
                    index,
                    key,
                    samples: series.samples(),
                    histograms: series.histograms(),
                });
            plan_write(head, incoming, request.metadata(), bounds)
        })
    }
}

/// Resolves every series of `request`, in three passes over the batch.
/// Finding a series costs a few cache misses (the hash table, the series,
/// its packed labels) that depend on one another; looping over all series
/// for each step in short loops lets the CPU overlap the misses of
/// different series instead of waiting for each in turn.
///
/// A series is found as sent when its label fields are byte for byte the
/// head's packed labels (a canonical encoding of a known series); any
/// other is validated and looked up by its canonical labels when planned.
fn resolve_all(
    head: &Head,
    request: &RawWrite,
    validator: &dyn SeriesValidator,
    invalid: &mut Refusals,
) -> Vec<Resolved> {
    let hashes: Vec<Option<u64>> = request
        .iter()
        .map(|series| series.label_fields().map(packed_labels_hash))
        .collect();
    let candidates: Vec<Option<(u32, &PackedLabels)>> = hashes
        .iter()
        .map(|hash| hash.and_then(|hash| head.hash_candidate(hash)))
        .collect();
    request
        .iter()
        .zip(candidates)
        .enumerate()
        .map(|(index, (series, candidate))| {
            let known = candidate.and_then(|(id, labels)| {
                let sent = series.label_fields().unwrap_or_default();
                if labels.matches_bytes(sent) {
                    Some(id)
                } else {
                    // Another series under the same hash: look through them all.
                    head.lookup_packed(sent)
                }
            });
            resolve(index, series, known, validator, invalid)
        })
        .collect()
}

fn resolve(
    index: usize,
    series: RawSeries<'_>,
    known: Option<u32>,
    validator: &dyn SeriesValidator,
    invalid: &mut Refusals,
) -> Resolved {
    // Labels equal to a stored (canonical, once validated) label set are
    // valid as they are, unless the validator has something left to check.
    if let Some(id) = known
        && validator.accepts_stored(series)
    {
        return Resolved::Known(id);
    }
    match validator.validate(series) {
        Ok(labels) => Resolved::New(labels),
        Err(reason) => {
            invalid.add(index, series, reason);
            Resolved::Invalid
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use prost::Message;
    use strata_proto::ingest::{RawLabel, RawTimeSeries, RawWriteRequest};
    use strata_proto::prometheus::Sample;

    use super::*;
    use crate::block::BlockCache;
    use crate::tenant_db::TenantOptions;

    /// Sorts labels and refuses values that are not UTF-8 or equal "bad";
    /// counts its calls.
    #[derive(Debug, Default)]
    struct Rules {
        validated: AtomicUsize,
        max_labels: usize,
    }

    impl SeriesValidator for Rules {
        fn validate(&self, series: RawSeries<'_>) -> Result<Vec<Label>, String> {
            self.validated.fetch_add(1, Ordering::Relaxed);
            let mut labels = Vec::new();
            for (name, value) in series.labels() {
                let name = std::str::from_utf8(name).map_err(|e| e.to_string())?;
                let value = std::str::from_utf8(value).map_err(|e| e.to_string())?;
                if value == "bad" {
                    return Err(format!("bad value of {name}"));
                }
                labels.push(strata_common::labels::label(name, value));
            }
            if labels.len() > self.max_labels {
                return Err("too many labels".to_owned());
            }
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(labels)
        }

        fn accepts_stored(&self, series: RawSeries<'_>) -> bool {
            series.label_count() <= self.max_labels
        }
    }

    fn rules() -> Rules {
        Rules {
            max_labels: 10,
            ..Rules::default()
        }
    }

    fn request(series: &[(&[(&str, &str)], i64)]) -> RawWrite {
        let timeseries = series
            .iter()
            .map(|(labels, t)| RawTimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| RawLabel {
                        name: n.as_bytes().to_vec(),
                        value: v.as_bytes().to_vec(),
                    })
                    .collect(),
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: *t,
                }],
                ..Default::default()
            })
            .collect();
        let bytes = RawWriteRequest {
            timeseries,
            metadata: Vec::new(),
        }
        .encode_to_vec();
        RawWrite::decode(bytes).expect("valid request")
    }

    fn open(dir: &std::path::Path) -> TenantDb {
        let cache = Arc::new(BlockCache::new(
            1 << 20,
            Default::default(),
            Default::default(),
        ));
        TenantDb::open("t", dir, TenantOptions::default(), cache)
            .expect("open")
            .0
    }

    const UP_A: &[(&str, &str)] = &[("__name__", "up"), ("job", "a")];
    const UP_A_UNSORTED: &[(&str, &str)] = &[("job", "a"), ("__name__", "up")];
    const UP_BAD: &[(&str, &str)] = &[("__name__", "up"), ("job", "bad")];

    #[test]
    fn known_series_skip_validation_and_new_ones_are_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let rules = rules();
        let (outcome, invalid) = db
            .write_raw(&request(&[(UP_A, 1), (UP_BAD, 1)]), &rules)
            .expect("write");
        assert_eq!(outcome.new_series, 1);
        assert_eq!(outcome.response.samples_written, 1);
        assert_eq!((invalid.series, invalid.samples), (1, 1));
        let first = invalid.first.expect("first refusal");
        assert_eq!(first.index, 1);
        assert_eq!(first.reason, "bad value of job");
        assert_eq!(first.rejected_samples, 1);
        assert_eq!(rules.validated.load(Ordering::Relaxed), 2);

        // Known as sent: no validation. Unsorted: validated, then found.
        let (outcome, invalid) = db
            .write_raw(&request(&[(UP_A, 2), (UP_A_UNSORTED, 3)]), &rules)
            .expect("write");
        assert_eq!(invalid, Refusals::default());
        assert_eq!(outcome.new_series, 0);
        assert_eq!(outcome.response.samples_written, 2);
        assert_eq!(rules.validated.load(Ordering::Relaxed), 3);
        assert_eq!(db.head().num_series(), 1);
    }

    #[test]
    fn a_series_sent_again_in_one_request_is_checked_against_its_earlier_samples() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let rules = rules();
        db.write_raw(&request(&[(UP_A, 1)]), &rules).expect("write");
        // Found as sent, then (unsorted) by its validated labels, then as
        // sent again: every entry sees the samples planned before it.
        let (outcome, invalid) = db
            .write_raw(
                &request(&[
                    (UP_A, 5),
                    (UP_A_UNSORTED, 3),
                    (UP_A, 4),
                    (UP_A, 6),
                    (UP_A_UNSORTED, 6),
                ]),
                &rules,
            )
            .expect("write");
        assert_eq!(invalid, Refusals::default());
        assert_eq!(outcome.response.samples_written, 2);
        let rejected: Vec<u32> = outcome.response.rejected.iter().map(|r| r.index).collect();
        assert_eq!(rejected, [1, 2]);
        let selected = db.select(&[], 0, 100).expect("select");
        assert_eq!(selected.len(), 1);
        let replayed = open(dir.path());
        assert_eq!(
            replayed.select(&[], 0, 100).expect("select"),
            selected,
            "the WAL holds what the head does"
        );
    }

    #[test]
    fn a_series_cut_away_after_it_was_found_is_created_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let rules = rules();
        db.write_raw(&request(&[(UP_A, 1)]), &rules).expect("write");
        let later = request(&[(UP_A, 10)]);
        let mut invalid = Refusals::default();
        let resolved = resolve_all(&db.head(), &later, &rules, &mut invalid);
        assert!(matches!(resolved[..], [Resolved::Known(_)]));
        // A cut between the lookup and the write drops the series.
        db.flush().expect("flush");
        assert_eq!(db.head().num_series(), 0);
        let outcome = db
            .write_resolved(&later, resolved, &rules, &mut invalid)
            .expect("write");
        assert_eq!(invalid, Refusals::default());
        assert_eq!(outcome.new_series, 1);
        assert_eq!(outcome.response.samples_written, 1);
        assert_eq!(
            db.head().num_series(),
            1,
            "the sample has a series to go to"
        );
    }

    #[test]
    fn a_known_series_the_validator_no_longer_accepts_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        db.write_raw(&request(&[(UP_A, 1)]), &rules())
            .expect("write");
        let lowered = Rules {
            max_labels: 1,
            ..Rules::default()
        };
        let (outcome, invalid) = db
            .write_raw(&request(&[(UP_A, 2)]), &lowered)
            .expect("write");
        assert_eq!(outcome.response.samples_written, 0);
        assert_eq!(invalid.first.expect("refused").reason, "too many labels");
    }

    #[test]
    fn refusals_of_known_series_name_them_like_the_owned_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let rules = rules();
        db.write_raw(&request(&[(UP_A, 10)]), &rules)
            .expect("write");
        // Out of order, for a series found by its bytes, then within the
        // request for a series created by it.
        let new = &[("__name__", "new")][..];
        let (outcome, invalid) = db
            .write_raw(&request(&[(UP_A, 5), (new, 7), (new, 6)]), &rules)
            .expect("write");
        assert_eq!(invalid, Refusals::default());
        assert_eq!(outcome.new_series, 1);
        let rejected = &outcome.response.rejected;
        assert_eq!(rejected.len(), 2);
        assert_eq!(rejected[0].index, 0);
        assert_eq!(
            rejected[0].reason,
            "out of order sample for series up{job=\"a\"}"
        );
        assert_eq!(rejected[1].index, 2);
        assert_eq!(rejected[1].reason, "out of order sample for series new");
    }
}

//! One tenant's database: its WAL and its head. Every write goes through the
//! WAL before it is visible or acknowledged; opening replays the WAL.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, RwLock};
use strata_proto::prometheus::{Label, MetricMetadata, TimeSeries};
use strata_proto::store::{RejectedSeries, WriteResponse};
use strata_proto::wal::{
    HistogramsRecord, MetadataRecord, SamplesRecord, SeriesEntry, SeriesRecord, WalRecord,
    wal_record,
};

use crate::hash::FastBuild;
use crate::head::{AppendCheck, Head, LastSample, SampleRejection, SampleValue, check_order};
use crate::wal::{ReplayStats, Wal, WalError, WalOptions};
use crate::wal_codec;

/// A tenant database could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum TenantDbError {
    #[error("write-ahead log of tenant {tenant} failed")]
    Wal {
        tenant: String,
        #[source]
        source: WalError,
    },
}

/// What one write did, before it is turned into a wire response.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub response: WriteResponse,
    pub new_series: u64,
}

/// A tenant's WAL and head.
#[derive(Debug)]
pub struct TenantDb {
    tenant: String,
    /// Held for a whole write: writers of one tenant are serialized, which
    /// keeps series ids and WAL order consistent.
    wal: Mutex<Wal>,
    head: RwLock<Head>,
}

impl TenantDb {
    /// Opens the tenant's directory, replaying its WAL into a fresh head.
    pub fn open(
        tenant: &str,
        dir: &Path,
        options: WalOptions,
    ) -> Result<(TenantDb, ReplayStats), TenantDbError> {
        let mut head = Head::new();
        let wal_dir: PathBuf = dir.join("wal");
        let mut replay = Replay::default();
        let (wal, stats) = Wal::open(&wal_dir, options, |payload| {
            replay.apply(&mut head, payload)
        })
        .map_err(|source| TenantDbError::Wal {
            tenant: tenant.to_owned(),
            source,
        })?;
        if replay.unknown_refs > 0 {
            tracing::warn!(
                tenant,
                samples = replay.unknown_refs,
                "wal samples referenced unknown series and were skipped"
            );
        }
        let db = TenantDb {
            tenant: tenant.to_owned(),
            wal: Mutex::new(wal),
            head: RwLock::new(head),
        };
        Ok((db, stats))
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Read access to the head.
    pub fn head(&self) -> parking_lot::RwLockReadGuard<'_, Head> {
        self.head.read()
    }

    /// Makes everything appended so far durable (shutdown, interval policy).
    pub fn sync(&self) -> Result<(), TenantDbError> {
        self.wal.lock().sync().map_err(|source| TenantDbError::Wal {
            tenant: self.tenant.clone(),
            source,
        })
    }

    /// Runs a due interval fsync, if any.
    pub fn sync_if_due(&self) -> Result<(), TenantDbError> {
        self.wal
            .lock()
            .sync_if_due()
            .map_err(|source| TenantDbError::Wal {
                tenant: self.tenant.clone(),
                source,
            })
    }

    /// Appends the accepted samples of `timeseries` and new `metadata`.
    /// Samples the head refuses (out of order, duplicate timestamp) are
    /// reported per series; the rest are durable in the WAL when this returns.
    pub fn write(
        &self,
        timeseries: &[TimeSeries],
        metadata: &[MetricMetadata],
    ) -> Result<WriteOutcome, TenantDbError> {
        let mut wal = self.wal.lock();
        let plan = {
            let head = self.head.read();
            plan_write(&head, timeseries, metadata)
        };
        let records = plan.records();
        if !records.is_empty() {
            let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            wal.append(&refs).map_err(|source| TenantDbError::Wal {
                tenant: self.tenant.clone(),
                source,
            })?;
        }
        let mut head = self.head.write();
        let outcome = plan.apply(&mut head);
        drop(head);
        drop(wal);
        Ok(outcome)
    }
}

/// The changes one write makes, decided under the head's read lock.
#[derive(Debug, Default)]
struct WritePlan {
    new_series: Vec<SeriesEntry>,
    samples: SamplesRecord,
    histograms: HistogramsRecord,
    metadata: Vec<MetricMetadata>,
    rejected: Vec<RejectedSeries>,
}

fn plan_write(head: &Head, timeseries: &[TimeSeries], metadata: &[MetricMetadata]) -> WritePlan {
    let mut plan = WritePlan::default();
    // Series created by this very request, and the newest sample accepted so
    // far per series, so that order checks see earlier samples of the request.
    let mut created: HashMap<&[Label], u32, FastBuild> = HashMap::default();
    let mut pending_last: HashMap<u32, LastSample, FastBuild> = HashMap::default();
    let mut next_id = head.next_id();

    for (index, series) in timeseries.iter().enumerate() {
        if series.samples.is_empty() && series.histograms.is_empty() {
            continue;
        }
        let existing = head
            .lookup(&series.labels)
            .or_else(|| created.get(series.labels.as_slice()).copied());
        let id = existing.unwrap_or(next_id);
        let mut last = pending_last.get(&id).cloned().or_else(|| {
            existing
                .and_then(|id| head.series(id))
                .and_then(|s| s.last_sample())
        });

        let mut accepted = 0u64;
        let mut refused = 0u64;
        let mut reason: Option<SampleRejection> = None;
        // Floats, then histograms: the order Prometheus' receiver appends them in.
        for sample in &series.samples {
            let bits = sample.value.to_bits();
            let value = SampleValue::Float(bits);
            match check_order(last.as_ref(), sample.timestamp, &value) {
                AppendCheck::Append => {
                    plan.samples.series_ids.push(id);
                    plan.samples.timestamps_ms.push(sample.timestamp);
                    plan.samples.value_bits.push(bits);
                    last = Some(LastSample {
                        t: sample.timestamp,
                        value,
                    });
                    accepted += 1;
                }
                AppendCheck::Duplicate => {}
                AppendCheck::Reject(why) => {
                    refused += 1;
                    reason.get_or_insert(why);
                }
            }
        }
        for histogram in &series.histograms {
            let value = SampleValue::Histogram(Box::new(histogram.clone()));
            match check_order(last.as_ref(), histogram.timestamp, &value) {
                AppendCheck::Append => {
                    plan.histograms.series_ids.push(id);
                    plan.histograms.histograms.push(histogram.clone());
                    last = Some(LastSample {
                        t: histogram.timestamp,
                        value,
                    });
                    accepted += 1;
                }
                AppendCheck::Duplicate => {}
                AppendCheck::Reject(why) => {
                    refused += 1;
                    reason.get_or_insert(why);
                }
            }
        }

        if accepted > 0 && existing.is_none() {
            plan.new_series.push(SeriesEntry {
                id,
                labels: series.labels.clone(),
            });
            created.insert(&series.labels, id);
            next_id += 1;
        }
        if let Some(last) = last {
            pending_last.insert(id, last);
        }
        if let Some(why) = reason {
            plan.rejected.push(RejectedSeries {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                reason: format!(
                    "{} for series {}",
                    why.message(),
                    strata_common::labels::format(&series.labels)
                ),
                rejected_samples: refused,
            });
        }
    }
    for entry in metadata {
        let repeated = plan.metadata.iter().any(|m| m == entry);
        if head.is_new_metadata(entry) && !repeated {
            plan.metadata.push(entry.clone());
        }
    }
    plan
}

impl WritePlan {
    /// The WAL records of this plan, series first so replay can resolve ids.
    fn records(&self) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        let mut push = |record: wal_record::Record| {
            records.push(wal_codec::encode(&WalRecord {
                record: Some(record),
            }));
        };
        if !self.new_series.is_empty() {
            push(wal_record::Record::Series(SeriesRecord {
                entries: self.new_series.clone(),
            }));
        }
        if !self.samples.series_ids.is_empty() {
            push(wal_record::Record::Samples(self.samples.clone()));
        }
        if !self.histograms.series_ids.is_empty() {
            push(wal_record::Record::Histograms(self.histograms.clone()));
        }
        if !self.metadata.is_empty() {
            push(wal_record::Record::Metadata(MetadataRecord {
                entries: self.metadata.clone(),
            }));
        }
        records
    }

    fn apply(self, head: &mut Head) -> WriteOutcome {
        let new_series = self.new_series.len() as u64;
        for entry in self.new_series {
            // The plan was made under the WAL lock from this head: ids are in sequence.
            if let Err(error) = head.create_series(entry.id, entry.labels) {
                tracing::error!(%error, "head rejected a planned series");
            }
        }
        let samples_written = self.samples.series_ids.len() as u64;
        apply_samples(head, &self.samples);
        let histograms_written = self.histograms.series_ids.len() as u64;
        apply_histograms(head, self.histograms);
        for entry in self.metadata {
            head.add_metadata(entry);
        }
        WriteOutcome {
            response: WriteResponse {
                samples_written,
                histograms_written,
                rejected: self.rejected,
            },
            new_series,
        }
    }
}

fn apply_samples(head: &mut Head, record: &SamplesRecord) {
    let rows = record
        .series_ids
        .iter()
        .zip(&record.timestamps_ms)
        .zip(&record.value_bits);
    for ((id, t), bits) in rows {
        head.append_float(*id, *t, *bits);
    }
}

fn apply_histograms(head: &mut Head, record: HistogramsRecord) {
    for (id, histogram) in record.series_ids.into_iter().zip(record.histograms) {
        head.append_histogram(id, histogram);
    }
}

/// Replay state: what each WAL series id means now.
///
/// Ids in the WAL normally equal head ids, but a write whose WAL append
/// failed half-way may leave a series record behind, after which the next
/// write reuses the id for another series. Replay therefore maps WAL ids
/// to head series as records come, the latest definition winning, and
/// finds series by labels so a label set defined twice is one series.
#[derive(Debug, Default)]
struct Replay {
    ids: HashMap<u32, u32>,
    unknown_refs: u64,
}

impl Replay {
    fn resolve(&mut self, wal_id: u32) -> Option<u32> {
        let id = self.ids.get(&wal_id).copied();
        if id.is_none() {
            self.unknown_refs += 1;
        }
        id
    }

    /// Applies one WAL record.
    fn apply(&mut self, head: &mut Head, payload: &[u8]) -> Result<(), String> {
        let record = wal_codec::decode(payload)?;
        match record.record {
            Some(wal_record::Record::Series(series)) => {
                for entry in series.entries {
                    let id = match head.lookup(&entry.labels) {
                        Some(id) => id,
                        None => {
                            let id = head.next_id();
                            head.create_series(id, entry.labels)?;
                            id
                        }
                    };
                    self.ids.insert(entry.id, id);
                }
            }
            Some(wal_record::Record::Samples(samples)) => {
                let rows = samples
                    .series_ids
                    .iter()
                    .zip(&samples.timestamps_ms)
                    .zip(&samples.value_bits);
                for ((wal_id, t), bits) in rows {
                    if let Some(id) = self.resolve(*wal_id) {
                        head.append_float(id, *t, *bits);
                    }
                }
            }
            Some(wal_record::Record::Histograms(histograms)) => {
                let rows = histograms.series_ids.into_iter().zip(histograms.histograms);
                for (wal_id, histogram) in rows {
                    if let Some(id) = self.resolve(wal_id) {
                        head.append_histogram(id, histogram);
                    }
                }
            }
            Some(wal_record::Record::Metadata(metadata)) => {
                for entry in metadata.entries {
                    head.add_metadata(entry);
                }
            }
            None => return Err("empty wal record".to_owned()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_common::labels::label;
    use strata_proto::prometheus::Sample;

    fn series(name: &str, samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: vec![label("__name__", name)],
            samples: samples
                .iter()
                .map(|(t, v)| Sample {
                    value: *v,
                    timestamp: *t,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn write_then_reopen_restores_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = f64::from_bits(strata_proto::STALE_NAN_BITS);
        {
            let (db, _) = TenantDb::open("t", dir.path(), WalOptions::default()).expect("open");
            let out = db
                .write(
                    &[
                        series("a", &[(1, 1.0), (2, stale)]),
                        series("b", &[(5, 2.0)]),
                    ],
                    &[],
                )
                .expect("write");
            assert_eq!(out.response.samples_written, 3);
            assert_eq!(out.new_series, 2);
        }
        let (db, stats) = TenantDb::open("t", dir.path(), WalOptions::default()).expect("reopen");
        assert!(stats.records >= 2);
        let head = db.head();
        assert_eq!(head.num_series(), 2);
        let ids = head.matching(&[], i64::MIN, i64::MAX);
        let selected = head.select(&ids, i64::MIN, i64::MAX);
        let a = crate::chunk::decode(&selected[0].chunks[0].data).expect("chunk");
        assert_eq!(a[1].1.to_bits(), strata_proto::STALE_NAN_BITS);
    }

    #[test]
    fn out_of_order_samples_are_rejected_per_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, _) = TenantDb::open("t", dir.path(), WalOptions::default()).expect("open");
        db.write(&[series("a", &[(10, 1.0)])], &[]).expect("write");
        let out = db
            .write(
                &[
                    series("a", &[(5, 1.0), (10, 1.0), (10, 3.0), (11, 2.0)]),
                    series("b", &[(1, 1.0)]),
                ],
                &[],
            )
            .expect("write");
        assert_eq!(out.response.samples_written, 2);
        assert_eq!(out.response.rejected.len(), 1);
        assert_eq!(out.response.rejected[0].index, 0);
        assert_eq!(out.response.rejected[0].rejected_samples, 2);
        assert_eq!(
            out.response.rejected[0].reason,
            "out of order sample for series a"
        );
    }

    #[test]
    fn a_series_repeated_in_one_request_gets_one_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, _) = TenantDb::open("t", dir.path(), WalOptions::default()).expect("open");
        let out = db
            .write(
                &[series("a", &[(1, 1.0)]), series("a", &[(2, 1.0), (1, 5.0)])],
                &[],
            )
            .expect("write");
        assert_eq!(out.new_series, 1);
        assert_eq!(out.response.samples_written, 2);
        assert_eq!(out.response.rejected[0].index, 1);
    }
}

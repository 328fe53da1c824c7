//! An in-memory [`Queryable`] for tests and embedding.

use strata_common::{Matcher, labels};

use crate::{QueryError, Queryable, SeriesData};

/// Series held in memory, kept sorted by labels.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueryable {
    series: Vec<SeriesData>,
}

impl MemoryQueryable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds samples to the series with these labels (sorted by name),
    /// creating it if needed; samples are kept sorted by time and a sample
    /// at an existing timestamp replaces the old one.
    pub fn add(&mut self, labels: Vec<strata_proto::prometheus::Label>, samples: &[(i64, f64)]) {
        let index = match self
            .series
            .binary_search_by(|s| labels::compare(&s.labels, &labels))
        {
            Ok(index) => index,
            Err(index) => {
                self.series.insert(
                    index,
                    SeriesData {
                        labels,
                        floats: Vec::new(),
                    },
                );
                index
            }
        };
        let floats = &mut self.series[index].floats;
        for &(t, v) in samples {
            match floats.binary_search_by_key(&t, |&(st, _)| st) {
                Ok(i) => floats[i].1 = v,
                Err(i) => floats.insert(i, (t, v)),
            }
        }
    }

    /// Removes every series.
    pub fn clear(&mut self) {
        self.series.clear();
    }
}

#[async_trait::async_trait]
impl Queryable for MemoryQueryable {
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, QueryError> {
        let mut out = Vec::new();
        for series in &self.series {
            let matches = matchers
                .iter()
                .all(|m| m.matches(labels::get(&series.labels, &m.name)));
            if !matches {
                continue;
            }
            let from = series.floats.partition_point(|&(t, _)| t < start_ms);
            let to = series.floats.partition_point(|&(t, _)| t <= end_ms);
            out.push(SeriesData {
                labels: series.labels.clone(),
                floats: series.floats[from..to].to_vec(),
            });
        }
        Ok(out)
    }
}

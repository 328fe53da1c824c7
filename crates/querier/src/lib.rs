//! The querier: stateless PromQL evaluation with Prometheus 3.5 semantics.
//!
//! Not built yet (the PromQL issue): this crate will parse with
//! `promql-parser`, plan, and evaluate over [`strata_common::StoreApi`],
//! fanning `Select` calls out to store nodes and merging replicas. The
//! metadata APIs that need no PromQL are served by the frontend directly
//! from the store service today.

//! Per-tenant overrides of the query frontend's settings, and the rendered
//! answers of whole requests.

use std::collections::BTreeMap;

use super::*;

/// A frontend whose tenant `a` has `overrides`; every other tenant has none.
fn with_overrides(
    config: &QueryFrontendConfig,
    overrides: &[(&str, &str)],
) -> (QueryFrontend, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let inner: Arc<dyn QueryApi> = fake.clone();
    let map: BTreeMap<String, String> = overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let lookup: LimitOverrides = Arc::new(move |tenant| (tenant == "a").then(|| map.clone()));
    let cell = Arc::new(OnceLock::new());
    let _ = cell.set(lookup);
    let frontend = QueryFrontend::with_overrides(config, inner, &mut Registry::default(), cell);
    (frontend, fake)
}

#[test]
fn a_tenants_query_limits_override_the_defaults_for_it_alone() {
    let mut config = config("24h");
    config.max_query_length = "2d".to_owned();
    let (frontend, fake) = with_overrides(
        &config,
        &[
            ("max_query_length", "1h"),
            ("max_query_lookback", "1d"),
            ("max_concurrent_queries_per_tenant", "1"),
            // Not a query frontend key: ignored here.
            ("max_label_names_per_series", "3"),
        ],
    );
    let rt = runtime();
    let two_hours = range("a", "m", NOW - 3 * HOUR, NOW - HOUR, MINUTE);
    let error = rt
        .block_on(frontend.query(two_hours.clone(), NOW))
        .expect_err("a's limit is 1h");
    assert_eq!(error.class, ErrorClass::BadData);
    assert!(error.message.contains("limit: 1h"), "{}", error.message);
    let old = range("a", "m", NOW - 30 * HOUR, NOW - 30 * HOUR + MINUTE, MINUTE);
    let error = rt
        .block_on(frontend.query(old.clone(), NOW))
        .expect_err("a's lookback is 1d");
    assert!(error.message.contains("limit: 1d"), "{}", error.message);
    assert!(fake.calls().is_empty());
    // Tenant b keeps the configured limits (2d length, no lookback limit).
    for request in [two_hours, old] {
        let request = QueryRequest {
            tenant: "b".to_owned(),
            ..request
        };
        rt.block_on(frontend.query(request, NOW))
            .expect("b answered");
    }
    let three_days = range("b", "m", NOW - 80 * HOUR, NOW - 2 * HOUR, MINUTE);
    let error = rt
        .block_on(frontend.query(three_days, NOW))
        .expect_err("b's limit is the configured 2d");
    assert!(error.message.contains("limit: 2d"), "{}", error.message);
    // Concurrency: a may run 1 query, b the configured 64.
    let a = frontend.settings_for("a");
    let b = frontend.settings_for("b");
    assert_eq!(
        (
            a.max_concurrent_queries_per_tenant,
            b.max_concurrent_queries_per_tenant
        ),
        (1, 64)
    );
    let held = frontend
        .start_running("a", a.max_concurrent_queries_per_tenant)
        .expect("first");
    assert!(
        frontend
            .start_running("a", a.max_concurrent_queries_per_tenant)
            .is_err()
    );
    for _ in 0..2 {
        assert!(
            frontend
                .start_running("b", b.max_concurrent_queries_per_tenant)
                .is_ok()
        );
    }
    drop(held);
}

#[test]
fn overrides_that_do_not_parse_keep_the_default() {
    let config = config("24h");
    let (frontend, _) = with_overrides(
        &config,
        &[
            ("max_query_length", "soon"),
            ("max_outstanding_per_tenant", "-1"),
            ("timeout", "0s"),
            ("max_queriers_per_tenant", "2"),
            ("max_cache_freshness", "1h"),
        ],
    );
    let a = frontend.settings_for("a");
    let defaults = frontend.settings_for("b");
    assert_eq!(a.max_query_length_ms, defaults.max_query_length_ms);
    assert_eq!(
        a.max_outstanding_per_tenant,
        defaults.max_outstanding_per_tenant
    );
    assert_eq!(a.timeout, defaults.timeout);
    assert_eq!(
        (a.max_queriers_per_tenant, defaults.max_queriers_per_tenant),
        (2, 0)
    );
    assert_eq!(
        (a.max_cache_freshness_ms, defaults.max_cache_freshness_ms),
        (HOUR, 10 * MINUTE)
    );
}

#[test]
fn a_tenants_outstanding_requests_bound_is_its_own() {
    let mut config = config("1h");
    config.max_concurrent = 1;
    config.max_query_parallelism = 100;
    let fake = Arc::new(Fake {
        gate: Some(tokio::sync::Semaphore::new(0)),
        ..Fake::default()
    });
    let inner: Arc<dyn QueryApi> = fake.clone();
    let lookup: LimitOverrides = Arc::new(|tenant| {
        (tenant == "a")
            .then(|| BTreeMap::from([("max_outstanding_per_tenant".to_owned(), "3".to_owned())]))
    });
    let cell = Arc::new(OnceLock::new());
    let _ = cell.set(lookup);
    let frontend = Arc::new(QueryFrontend::with_overrides(
        &config,
        inner,
        &mut Registry::default(),
        cell,
    ));
    let rt = runtime();
    rt.block_on(async {
        // b holds the only slot; its other 9 intervals wait (more than a's 3).
        let b = {
            let frontend = Arc::clone(&frontend);
            let request = range("b", "m", NOW - 40 * HOUR, NOW - 30 * HOUR + MINUTE, MINUTE);
            tokio::spawn(async move { frontend.query(request, NOW).await })
        };
        until(|| fake.calls().len() == 1 && frontend.queue.waiting() >= 10).await;
        // a's 5 intervals: 3 may wait, the 4th is refused.
        let request = range("a", "m", NOW - 20 * HOUR, NOW - 15 * HOUR - MINUTE, MINUTE);
        let error = frontend
            .query(request, NOW)
            .await
            .expect_err("a's bound is 3");
        assert_eq!(error.class, ErrorClass::RateLimited);
        assert!(error.message.contains("limit 3"), "{}", error.message);
        fake.gate.as_ref().expect("gate").add_permits(1000);
        b.await
            .expect("task")
            .expect("b's 11 intervals were all queued");
    });
}

#[test]
fn a_tenants_longer_freshness_window_keeps_its_recent_answers_out_of_the_cache() {
    let (frontend, fake) = with_overrides(&config("24h"), &[("max_cache_freshness", "3h")]);
    let rt = runtime();
    for tenant in ["a", "b"] {
        let request = range(tenant, "m", NOW - 5 * HOUR, NOW - 2 * HOUR, MINUTE);
        rt.block_on(frontend.query(request.clone(), NOW))
            .expect("answer");
        let (_, outcome) = rt.block_on(frontend.query(request, NOW)).expect("answer");
        // b (10m window): all from the cache; a (3h): the last 2h recomputed.
        let expected = if tenant == "a" { "partial" } else { "hit" };
        assert_eq!(outcome.cache_status(), expected, "tenant {tenant}");
    }
    let calls = fake.calls();
    let a_last = calls.iter().rfind(|c| c.tenant == "a").expect("a");
    assert_eq!(a_last.start_ms, NOW - 3 * HOUR + MINUTE);
}

#[test]
fn whole_answers_are_kept_rendered_only_when_nothing_in_them_is_recomputed() {
    let (frontend, _) = frontend(&config("24h"));
    let rt = runtime();
    let old = range("a", "m", NOW - 30 * HOUR, NOW - HOUR, MINUTE);
    let key = frontend.rendered_key(&old, NOW).expect("old enough");
    let (_, outcome) = rt
        .block_on(frontend.query(old.clone(), NOW))
        .expect("answer");
    assert!(outcome.whole_cached, "cold, but every point was stored");
    assert_eq!(frontend.rendered(&key, &old, NOW).expect("limits"), None);
    frontend.keep_rendered(key.clone(), Bytes::from_static(b"rendered"));
    let body = frontend.rendered(&key, &old, NOW).expect("limits");
    assert_eq!(body.as_deref(), Some(&b"rendered"[..]));
    // Another tenant's identical request has its own key.
    let other = QueryRequest {
        tenant: "b".to_owned(),
        ..old.clone()
    };
    let other_key = frontend.rendered_key(&other, NOW).expect("old enough");
    assert_ne!(other_key, key);
    assert_eq!(
        frontend.rendered(&other_key, &other, NOW).expect("limits"),
        None
    );

    // Reaching into the freshness window: no key, and not whole in the cache.
    let recent = range("a", "m", NOW - 30 * HOUR, NOW - 5 * MINUTE, MINUTE);
    assert!(frontend.rendered_key(&recent, NOW).is_none());
    let (_, outcome) = rt.block_on(frontend.query(recent, NOW)).expect("answer");
    assert!(!outcome.whole_cached);
    // Queries that are never cached (a negative offset reads ahead).
    let ahead = range("a", "m offset -1h", NOW - 30 * HOUR, NOW - 2 * HOUR, MINUTE);
    let (_, outcome) = rt.block_on(frontend.query(ahead, NOW)).expect("answer");
    assert!(!outcome.whole_cached);
    // Old instant queries are cached whole.
    let instant = range("a", "m", NOW - 2 * HOUR, NOW - 2 * HOUR, 0);
    let (_, outcome) = rt.block_on(frontend.query(instant, NOW)).expect("answer");
    assert!(outcome.whole_cached);
}

#[test]
fn kept_renderings_obey_the_limits_and_can_be_turned_off() {
    let mut config = config("24h");
    config.max_query_lookback = "1d".to_owned();
    let (frontend, _) = frontend(&config);
    let request = range("a", "m", NOW - 20 * HOUR, NOW - HOUR, MINUTE);
    let key = frontend.rendered_key(&request, NOW).expect("old enough");
    frontend.keep_rendered(key.clone(), Bytes::from_static(b"x"));
    // A day later the same request starts too far back.
    let error = frontend
        .rendered(&key, &request, NOW + 24 * HOUR)
        .expect_err("beyond the lookback limit");
    assert!(
        error.message.contains("max_query_lookback"),
        "{}",
        error.message
    );

    config.rendered_cache_max_bytes = 0;
    let (off, _) = super::frontend(&config);
    assert!(off.rendered_key(&request, NOW).is_none());
}

#[test]
fn every_overridable_key_changes_the_tenants_settings() {
    let config = config("24h");
    let (frontend, _) = frontend(&config);
    let defaults = frontend.settings_for("a");
    for key in TENANT_OVERRIDABLE_KEYS {
        // A value no default has: 7 (a count) or 7h (a duration).
        let overrides = BTreeMap::from([((*key).to_owned(), "7".to_owned())]);
        let mut changed = defaults.with_overrides(&overrides);
        if format!("{changed:?}") == format!("{defaults:?}") {
            let overrides = BTreeMap::from([((*key).to_owned(), "7h".to_owned())]);
            changed = defaults.with_overrides(&overrides);
        }
        assert_ne!(
            format!("{changed:?}"),
            format!("{defaults:?}"),
            "override of {key} ignored"
        );
    }
}

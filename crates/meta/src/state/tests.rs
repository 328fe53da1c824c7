//! Epoch and membership rules of the state machine.

use super::*;

const DELAY: i64 = 10_000;

fn settings(min_stores: u32) -> PlacementSettings {
    PlacementSettings {
        replication_factor: 3,
        default_shards: 8,
        min_stores,
        epoch_delay_ms: DELAY,
    }
}

fn apply(state: &mut MetaState, min_stores: u32, now_ms: i64, command: Command) -> CommandResult {
    state.apply(&Proposal {
        now_ms,
        settings: settings(min_stores),
        command,
    })
}

fn register(state: &mut MetaState, min_stores: u32, now_ms: i64, id: &str) {
    let command = Command::RegisterStore {
        id: id.to_owned(),
        address: format!("http://{id}:9095"),
        zone: String::new(),
    };
    assert_eq!(apply(state, min_stores, now_ms, command), Ok(Applied::Done));
}

fn remove(state: &mut MetaState, now_ms: i64, id: &str) -> CommandResult {
    apply(state, 1, now_ms, Command::RemoveStore { id: id.to_owned() })
}

fn stores(epoch: &Epoch) -> Vec<&str> {
    epoch.stores.iter().map(String::as_str).collect()
}

#[test]
fn no_epoch_until_min_stores_then_first_epoch_starts_at_min() {
    let mut state = MetaState::default();
    register(&mut state, 3, 1_000, "b");
    register(&mut state, 3, 2_000, "a");
    assert!(state.epochs.is_empty());
    register(&mut state, 3, 3_000, "c");
    assert_eq!(state.epochs.len(), 1);
    let first = &state.epochs[0];
    assert_eq!(first.id, 1);
    assert_eq!(first.start_ms, i64::MIN);
    assert_eq!(stores(first), ["a", "b", "c"]);
    assert_eq!(first.replication_factor, 3);
    assert_eq!(first.default_shards, 8);
}

#[test]
fn removed_stores_do_not_count_towards_min_stores() {
    let mut state = MetaState::default();
    register(&mut state, 2, 1_000, "a");
    assert_eq!(remove(&mut state, 1_500, "a"), Ok(Applied::Done));
    register(&mut state, 2, 2_000, "b");
    assert!(state.epochs.is_empty());
    register(&mut state, 2, 3_000, "c");
    assert_eq!(stores(&state.epochs[0]), ["b", "c"]);
}

#[test]
fn new_store_starts_an_epoch_after_the_delay() {
    let mut state = MetaState::default();
    register(&mut state, 1, 1_000, "a");
    register(&mut state, 1, 50_000, "b");
    assert_eq!(state.epochs.len(), 2);
    let second = &state.epochs[1];
    assert_eq!(second.id, 2);
    assert_eq!(second.start_ms, 50_000 + DELAY);
    assert_eq!(stores(second), ["a", "b"]);
}

#[test]
fn change_before_a_pending_epoch_starts_gets_an_epoch_of_its_own() {
    let mut state = MetaState::default();
    register(&mut state, 1, 1_000, "a");
    register(&mut state, 1, 50_000, "b");
    // Still before 60_000, when epoch 2 starts: epoch 2 stays as it is,
    // since distributors may already route by it.
    register(&mut state, 1, 55_000, "c");
    assert_eq!(state.epochs.len(), 3);
    let second = &state.epochs[1];
    assert_eq!((second.id, second.start_ms), (2, 60_000));
    assert_eq!(stores(second), ["a", "b"]);
    let third = &state.epochs[2];
    assert_eq!((third.id, third.start_ms), (3, 65_000));
    assert_eq!(stores(third), ["a", "b", "c"]);

    assert_eq!(remove(&mut state, 70_000, "a"), Ok(Applied::Done));
    assert_eq!(state.epochs.len(), 4);
    assert_eq!(state.epochs[3].start_ms, 70_000 + DELAY);
    assert_eq!(stores(&state.epochs[3]), ["b", "c"]);
    // The last stores cannot all be removed.
    assert_eq!(remove(&mut state, 71_000, "b"), Ok(Applied::Done));
    assert!(matches!(
        remove(&mut state, 72_000, "c"),
        Err(CommandError::TooFewStores { .. })
    ));
}

#[test]
fn zero_delay_still_gives_strictly_increasing_starts() {
    let mut state = MetaState::default();
    let zero_delay = PlacementSettings {
        epoch_delay_ms: 0,
        ..settings(1)
    };
    for (now_ms, id) in [(5, "a"), (5, "b"), (5, "c")] {
        let command = Command::RegisterStore {
            id: id.to_owned(),
            address: String::new(),
            zone: String::new(),
        };
        let proposal = Proposal {
            now_ms,
            settings: zero_delay,
            command,
        };
        assert_eq!(state.apply(&proposal), Ok(Applied::Done));
    }
    let starts: Vec<i64> = state.epochs.iter().map(|e| e.start_ms).collect();
    assert_eq!(starts, [i64::MIN, 5, 6]);
}

#[test]
fn re_register_updates_address_without_a_new_epoch() {
    let mut state = MetaState::default();
    register(&mut state, 1, 1_000, "a");
    let command = Command::RegisterStore {
        id: "a".to_owned(),
        address: "http://moved:9095".to_owned(),
        zone: "z1".to_owned(),
    };
    assert_eq!(apply(&mut state, 1, 5_000, command), Ok(Applied::Done));
    assert_eq!(state.epochs.len(), 1);
    let member = &state.members["a"];
    assert_eq!(member.address, "http://moved:9095");
    assert_eq!(member.zone, "", "the zone of the first registration stays");
    assert_eq!(member.registered_ms, 1_000);
    assert_eq!(member.last_heartbeat_ms, 5_000);
}

#[test]
fn re_register_of_a_removed_store_reactivates_it_in_a_new_epoch() {
    let mut state = MetaState::default();
    register(&mut state, 1, 1_000, "a");
    register(&mut state, 1, 1_000, "b");
    assert_eq!(remove(&mut state, 100_000, "b"), Ok(Applied::Done));
    assert_eq!(state.members["b"].state, MemberState::Removed);
    assert_eq!(stores(state.epochs.last().expect("epoch")), ["a"]);
    register(&mut state, 1, 200_000, "b");
    assert_eq!(state.members["b"].state, MemberState::Active);
    let last = state.epochs.last().expect("epoch");
    assert_eq!(stores(last), ["a", "b"]);
    assert_eq!(last.start_ms, 210_000);
}

#[test]
fn removing_twice_or_unknown() {
    let mut state = MetaState::default();
    register(&mut state, 1, 1_000, "a");
    register(&mut state, 1, 1_000, "b");
    assert_eq!(remove(&mut state, 100_000, "b"), Ok(Applied::Done));
    let epochs = state.epochs.len();
    assert_eq!(remove(&mut state, 200_000, "b"), Ok(Applied::Done));
    assert_eq!(
        state.epochs.len(),
        epochs,
        "removing a removed store is a no-op"
    );
    assert_eq!(
        remove(&mut state, 200_000, "zzz"),
        Err(CommandError::StoreNotFound {
            id: "zzz".to_owned()
        })
    );
}

#[test]
fn heartbeat_of_unknown_store_is_not_found() {
    let mut state = MetaState::default();
    let result = apply(&mut state, 1, 1_000, Command::Heartbeat { id: "x".into() });
    assert_eq!(
        result,
        Err(CommandError::StoreNotFound { id: "x".to_owned() })
    );
    register(&mut state, 1, 1_000, "x");
    let result = apply(&mut state, 1, 7_000, Command::Heartbeat { id: "x".into() });
    assert_eq!(result, Ok(Applied::Done));
    assert_eq!(state.members["x"].last_heartbeat_ms, 7_000);
    assert_eq!(state.epochs.len(), 1, "heartbeats never start epochs");
}

#[test]
fn tenants_ensure_and_set() {
    let mut state = MetaState::default();
    register(&mut state, 1, 1_000, "a");
    let ensure = Command::EnsureTenant {
        tenant: "t1".into(),
    };
    let created = apply(&mut state, 1, 2_000, ensure.clone());
    let Ok(Applied::Tenant(tenant)) = created else {
        panic!("unexpected {created:?}");
    };
    assert_eq!(tenant.shards, 0);
    assert_eq!(tenant.created_ms, 2_000);
    // A second ensure changes nothing.
    assert_eq!(
        apply(&mut state, 1, 3_000, ensure),
        Ok(Applied::Tenant(tenant))
    );

    // Limits only: no new epoch.
    let set_limits = Command::SetTenant {
        tenant: "t1".into(),
        shards: 0,
        limits: BTreeMap::from([("a".to_owned(), "1".to_owned())]),
        replace_limits: false,
    };
    assert!(apply(&mut state, 1, 50_000, set_limits).is_ok());
    assert_eq!(state.epochs.len(), 1);

    // A shard change starts an epoch listing the tenant.
    let set_shards = Command::SetTenant {
        tenant: "t1".into(),
        shards: 16,
        limits: BTreeMap::from([("b".to_owned(), "2".to_owned())]),
        replace_limits: false,
    };
    assert!(apply(&mut state, 1, 60_000, set_shards.clone()).is_ok());
    assert_eq!(state.epochs.len(), 2);
    assert_eq!(state.epochs[1].start_ms, 70_000);
    assert_eq!(
        state.epochs[1].tenant_shards,
        BTreeMap::from([("t1".to_owned(), 16)])
    );
    assert_eq!(state.tenants["t1"].limits.len(), 2, "limits merged");

    // Same shard count again: nothing new.
    assert!(apply(&mut state, 1, 90_000, set_shards).is_ok());
    assert_eq!(state.epochs.len(), 2);

    // Replacing limits.
    let replace = Command::SetTenant {
        tenant: "t1".into(),
        shards: 0,
        limits: BTreeMap::from([("c".to_owned(), "3".to_owned())]),
        replace_limits: true,
    };
    assert!(apply(&mut state, 1, 91_000, replace).is_ok());
    assert_eq!(
        state.tenants["t1"].limits,
        BTreeMap::from([("c".to_owned(), "3".to_owned())])
    );

    // A shard count equal to the default is not listed.
    let to_default = Command::SetTenant {
        tenant: "t1".into(),
        shards: 8,
        limits: BTreeMap::new(),
        replace_limits: false,
    };
    assert!(apply(&mut state, 1, 100_000, to_default).is_ok());
    assert_eq!(state.epochs.len(), 3);
    assert!(state.epochs[2].tenant_shards.is_empty());
}

#[test]
fn set_tenant_creates_an_unknown_tenant() {
    let mut state = MetaState::default();
    let set = Command::SetTenant {
        tenant: "new".into(),
        shards: 4,
        limits: BTreeMap::new(),
        replace_limits: false,
    };
    assert!(apply(&mut state, 1, 1_000, set).is_ok());
    assert_eq!(state.tenants["new"].shards, 4);
    assert_eq!(state.tenants["new"].created_ms, 1_000);
    assert!(state.epochs.is_empty(), "no stores, no epoch");
}

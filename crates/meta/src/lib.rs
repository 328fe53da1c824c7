//! Cluster metadata: store-node membership, shard placement epochs, tenants
//! and their limit overrides, replicated with `openraft`.
//!
//! Not built yet (the cluster issue). A single node (`--target all`) needs
//! no meta service: it has one store and its tenants are created on first
//! write.

//! Compiles the wire contracts with `protox` (pure Rust): no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Prometheus' files import each other as "types.proto" and "gogoproto/gogo.proto",
    // so both folders are include roots and files are named relative to them.
    let includes = ["schemas/prompb", "schemas"];
    let files = [
        "types.proto",
        "remote.proto",
        "strata/store.proto",
        "strata/wal.proto",
        "strata/ingest.proto",
        "strata/query.proto",
        "strata/meta.proto",
    ];
    println!("cargo:rerun-if-changed=schemas");
    let descriptors = protox::compile(files, includes)?;
    tonic_prost_build::configure()
        // Shared between replicas by reference count, never copied.
        .bytes(".strata.store.v1.EncodedWriteRequest.timeseries")
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}

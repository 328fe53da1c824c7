.PHONY: fmt lint test bench build

build:
	cargo build --release

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test:
	scripts/test

bench: build
	cargo run --release --bin strata-bench -- ingest

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

# Builds every cargo-fuzz target in fuzz/ (a workspace of its own) on the
# stable toolchain. Needs `cargo install cargo-fuzz`; see docs/fuzzing.md.
.PHONY: fuzz-build
fuzz-build:
	@command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2; exit 1; }
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build

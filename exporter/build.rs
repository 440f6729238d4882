//! Builds the kernel programs (`exporter-ebpf`) for the BPF target with aya-build.
//!
//! The BPF core library comes prebuilt from Debian (`libstd-rust-web-dev-bpf`), so the build
//! runs on Debian's stable rustc, linked into rustup as `debian-bpf` by `scripts/setup`, with
//! unstable features allowed for `aya_ebpf` and the programs' crate only (not `-Z build-std`).
use aya_build::{Package, Toolchain};

/// The Parquet sink's tests read their files back with DuckDB (a dev-dependency): the unit-test
/// executable finds the prebuilt libduckdb.so where it was linked from. Only a search path:
/// the agent's binary needs no DuckDB (cargo has no link argument for a library's unit tests
/// alone).
fn duckdb_rpath_for_tests() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}

fn main() {
    duckdb_rpath_for_tests();
    println!("cargo:rerun-if-env-changed=PIPETRACE_EBPF_TOOLCHAIN");
    println!("cargo:rerun-if-changed=../exporter-common/src");
    let toolchain =
        std::env::var("PIPETRACE_EBPF_TOOLCHAIN").unwrap_or_else(|_| "debian-bpf".to_owned());
    // SAFETY: build scripts are single-threaded at this point.
    // `pipetrace` (the kernel programs) for BPF inline assembly, as aya_ebpf does.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf,pipetrace") };
    // The manifest directory of *this* build (not the one baked in when the build script was
    // compiled: clones sharing a target directory share the compiled build script).
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let root_dir = format!("{manifest_dir}/../exporter-ebpf");
    let package = Package {
        name: "exporter-ebpf",
        root_dir: &root_dir,
        ..Default::default()
    };
    if let Err(err) = aya_build::build_ebpf([package], Toolchain::Custom(&toolchain)) {
        eprintln!(
            "error: building the eBPF programs failed: {err:#}\n\
             hint: run `sudo scripts/setup` (Debian rustc-web, libstd-rust-web-dev-bpf, \
             llvm-dev and bpf-linker, rustup toolchain `{toolchain}`)"
        );
        std::process::exit(1);
    }
}

//! Records where the prebuilt libduckdb.so was linked from, so that `otel-pipetrace-query`
//! finds it at run time without LD_LIBRARY_PATH.

/// The prebuilt libduckdb.so is found at run time where it was linked from (no LD_LIBRARY_PATH).
fn duckdb_rpath() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_BUNDLED_DUCKDB").is_some() {
        return;
    }
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}

fn main() {
    duckdb_rpath();
}

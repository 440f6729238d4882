//! The configuration loader takes any text: a valid configuration or a one-line error, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match pipetrace::config::Config::from_toml(text) {
            Ok(config) => {
                // A valid configuration round-trips through its TOML form.
                let _ = config.to_toml();
            }
            Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error: {e}"),
        }
    }
});

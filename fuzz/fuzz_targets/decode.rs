//! The ring-buffer decoder takes any bytes: it decodes them or returns an error, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = pipetrace::capture::decode::decode(data) {
        // Whatever decoded is usable by the sinks.
        let _ = event.kind_name();
    }
});

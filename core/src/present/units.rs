//! Durations and sizes in the unit that reads best, with three significant digits everywhere.

/// Three significant digits: 1.23, 12.3, 123.
fn three_digits(v: f64) -> String {
    let a = v.abs();
    if a >= 99.95 {
        format!("{v:.0}")
    } else if a >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `850 µs`, `12.3 ms`, `1.23 s`, `2.50 min`, `1.20 h`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.abs();
    if !seconds.is_finite() {
        return "-".into();
    }
    if seconds == 0.0 {
        return "0 s".into();
    }
    // Each bound is where the smaller unit would need a fourth digit after rounding.
    if s < 999.5e-6 {
        format!("{} µs", three_digits(seconds * 1e6))
    } else if s < 0.9995 {
        format!("{} ms", three_digits(seconds * 1e3))
    } else if s < 59.95 {
        format!("{} s", three_digits(seconds))
    } else if s < 3597.0 {
        format!("{} min", three_digits(seconds / 60.0))
    } else {
        format!("{} h", three_digits(seconds / 3600.0))
    }
}

/// A duration in nanoseconds.
pub fn duration_ns(ns: i64) -> String {
    duration(ns as f64 / 1e9)
}

/// `512 B`, `1.00 KiB`, `12.3 MiB`, `1.21 GiB`.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n.unsigned_abs() < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    for unit in UNITS {
        if v.abs() < 999.5 {
            return format!("{} {unit}", three_digits(v));
        }
        v /= 1024.0;
    }
    format!("{} EiB", three_digits(v))
}

/// A signed change: `+12.3 ms`, `-1.20 s`.
pub fn signed(text: String, negative: bool) -> String {
    let body = text.trim_start_matches('-');
    if negative {
        format!("-{body}")
    } else {
        format!("+{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_unit_that_reads_best() {
        for (s, text) in [
            (0.000_000_5, "0.50 µs"),
            (0.000_85, "850 µs"),
            (0.000_999_7, "1.00 ms"),
            (0.0123, "12.3 ms"),
            (0.2, "200 ms"),
            (1.234, "1.23 s"),
            (12.34, "12.3 s"),
            (59.99, "1.00 min"),
            (150.0, "2.50 min"),
            (4320.0, "1.20 h"),
        ] {
            assert_eq!(duration(s), text, "{s}");
        }
    }

    #[test]
    fn sizes_use_binary_units() {
        for (n, text) in [
            (512, "512 B"),
            (1024, "1.00 KiB"),
            (12_900_000, "12.3 MiB"),
            (1_300_000_000, "1.21 GiB"),
            (1023 * 1024, "1.00 MiB"),
        ] {
            assert_eq!(bytes(n), text, "{n}");
        }
    }
}

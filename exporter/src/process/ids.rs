//! Trace and span identifiers: random, never zero, cheap to make (one per process).

/// splitmix64, seeded from the kernel's random pool: unique ids, not secrets.
#[derive(Debug)]
pub struct IdGenerator {
    state: u64,
}

fn random_seed() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(buf)
    } else {
        // No getrandom: time and pid still make collisions between runs unlikely.
        crate::capture::clock::monotonic_ns() ^ (u64::from(std::process::id()) << 32)
    }
}

impl IdGenerator {
    pub fn new() -> Self {
        Self {
            state: random_seed(),
        }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn span_id(&mut self) -> u64 {
        loop {
            let id = self.next();
            if id != 0 {
                return id;
            }
        }
    }

    pub fn trace_id(&mut self) -> u128 {
        (u128::from(self.span_id()) << 64) | u128::from(self.next())
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_non_zero() {
        let mut a = IdGenerator::new();
        let mut b = IdGenerator::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(a.span_id()));
            assert!(seen.insert(b.span_id()));
        }
        assert_ne!(a.trace_id(), 0);
    }
}

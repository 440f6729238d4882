//! A step's identity across runs: its command line with what changes from run to run — paths
//! made by `mktemp`, UUIDs, hex ids, timestamps, pids and other long numbers — replaced by
//! placeholders, so that `durations --run all` and `compare` see the same step in every run.

use std::sync::LazyLock;

use regex::Regex;

/// Rules applied in order: the wider patterns (a UUID, a timestamp) before the parts they
/// contain (hex, digits).
static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // The first component under a temporary directory: mktemp's `tmp.XXXXXXXXXX`, `-t`
        // templates and per-run scratch directories alike.
        (r"(^|[\s='\x22:])(/tmp|/var/tmp|/dev/shm|/run/user/\d+)/[^/\s'\x22]+", "$1$2/<tmp>"),
        (r"\btmp\.[A-Za-z0-9]{6,}\b", "tmp.<tmp>"),
        (
            r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            "<uuid>",
        ),
        (
            r"\b\d{4}-\d{2}-\d{2}(?:[T _]\d{2}[:\-]?\d{2}(?:[:\-]?\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?",
            "<time>",
        ),
        (r"\b\d{8}[T_-]?\d{6}\b", "<time>"),
        (r"/proc/\d+\b", "/proc/<pid>"),
        // Hex ids (commits, run ids, digests): long, or mixing digits and letters.
        (r"(?i)\b[0-9a-f]{16,}\b", "<hex>"),
        (r"(?i)\b(?:[0-9a-f]*[0-9][0-9a-f]*[a-f][0-9a-f]*|[0-9a-f]*[a-f][0-9a-f]*[0-9][0-9a-f]*)\b", "<hex?>"),
        // Pids, epoch times, sizes that vary: five digits or more.
        (r"\b\d{5,}\b", "<n>"),
    ]
    .into_iter()
    .map(|(pattern, with)| (Regex::new(pattern).expect("valid step-key pattern"), with))
    .collect()
});

/// Hex-looking words shorter than this stay (`cafe42`, `e2e`, `md5`).
const MIN_MIXED_HEX: usize = 8;

/// The step key of `command`.
pub fn step_key(command: &str) -> String {
    let mut key = command.to_owned();
    for (pattern, with) in RULES.iter() {
        if *with == "<hex?>" {
            key = pattern
                .replace_all(&key, |c: &regex::Captures| {
                    let word = &c[0];
                    if word.len() >= MIN_MIXED_HEX {
                        "<hex>".to_owned()
                    } else {
                        word.to_owned()
                    }
                })
                .into_owned();
            continue;
        }
        key = pattern.replace_all(&key, *with).into_owned();
    }
    key
}

#[cfg(test)]
mod tests {
    use super::step_key;

    #[test]
    fn run_specific_parts_become_placeholders() {
        for (command, key) in [
            (
                "cp data.csv /tmp/tmp.Ab3dE9xYz1/in.csv",
                "cp data.csv /tmp/<tmp>/in.csv",
            ),
            ("rm -rf /tmp/build.k2J9aa", "rm -rf /tmp/<tmp>"),
            ("tar -C=/var/tmp/x1/y -x", "tar -C=/var/tmp/<tmp>/y -x"),
            ("cat /proc/4242/status", "cat /proc/<pid>/status"),
            (
                "git checkout 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39",
                "git checkout <hex>",
            ),
            ("deploy --id 0b5e12ac9f", "deploy --id <hex>"),
            (
                "job --uuid 123E4567-E89B-12D3-A456-426614174000",
                "job --uuid <uuid>",
            ),
            ("log --since 2026-11-30T11:37:18Z", "log --since <time>"),
            ("backup out-20261130_113718.tar", "backup out-<time>.tar"),
            ("kill 4242117", "kill <n>"),
            ("touch stamp.1764502638", "touch stamp.<n>"),
        ] {
            assert_eq!(step_key(command), key, "{command}");
        }
    }

    #[test]
    fn ordinary_arguments_stay() {
        for command in [
            "sleep 0.2",
            "make -j2 all",
            "python3 transform.py --rows 1000",
            "gcc -O2 -c md5.c -o md5.o",
            "sh -c 'exit 3'",
            "sort -k2 /home/ci/tmp/data",
        ] {
            assert_eq!(step_key(command), command);
        }
    }
}

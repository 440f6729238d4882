//! Redaction of secrets in command lines, applied by the tracker's consumer to every exec event
//! (and to command lines read from `/proc`) before any sink sees it: spans, metrics, Parquet and JSONL only ever get
//! the redacted text. Environment variables are never captured at all.
//!
//! Built-in rules (on by default) cover the common forms: `--password=…` and `--token …` style
//! flags (the value in the same argument or the next one), `NAME_SECRET=…` style assignments,
//! `Authorization: Bearer …` headers, AWS access key ids and URLs with a password. Users add
//! flag names and regular expressions (`[redact]` in the configuration).

use regex::Regex;

use crate::config::{PatternError, RedactSection, compile_patterns};

/// What replaces a secret.
pub const MASK: &str = "***";

/// How AWS access key ids begin.
const AWS_PREFIXES: [&str; 8] = [
    "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
];

/// Last words of a flag or variable name that make its value secret (`--db-password`,
/// `GITHUB_TOKEN`, `-Dsonar.password`). Matched as whole words, so `--max-tokens`,
/// `--tokenizer`, `-pass-through` and `--compass` stay as they are.
const SECRET_LAST_WORDS: [&str; 10] = [
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "secret",
    "token",
    "apikey",
    "credential",
    "credentials",
];

/// Last two words that do the same (`--api-key`, `AWS_SECRET_ACCESS_KEY`, `client_secret`).
const SECRET_LAST_PAIRS: [(&str, &str); 9] = [
    ("api", "key"),
    ("access", "key"),
    ("private", "key"),
    ("secret", "key"),
    ("session", "key"),
    ("signing", "key"),
    ("encryption", "key"),
    ("master", "key"),
    ("account", "key"),
];

/// Names that end in a secret word but are not secrets: the shell's working directory.
const NOT_SECRET_NAMES: [&str; 2] = ["pwd", "oldpwd"];

/// The words of a flag or variable name: split at `-`, `_`, `.` and lower-to-upper case
/// changes (`dbPassword`), lower-cased.
fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[derive(Debug)]
pub struct Redactor {
    enabled: bool,
    /// Extra flags whose value is secret, exactly as typed (`--db`).
    extra_flags: Vec<String>,
    /// `NAME=value` and `--flag=value` / `--flag:value` anywhere in a text: the name is judged
    /// by [`Redactor::is_secret_name`].
    assignment: Regex,
    /// `--flag value` inside a longer text (`sh -c "…"`).
    flag_then_value: Regex,
    /// Forms that are secret whatever their name: the `keep` group (when present) is kept,
    /// the rest of the match is masked.
    fixed: Vec<Regex>,
    /// User patterns: the `secret` group, or the whole match, is masked.
    user: Vec<Regex>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(true, &[], &[]).expect("built-in patterns compile")
    }
}

impl Redactor {
    /// As configured (patterns were checked when the configuration was loaded).
    pub fn from_config(section: &RedactSection) -> Result<Self, PatternError> {
        Self::new(section.enabled, &section.flags, &section.patterns)
    }

    /// `flags`: extra flag names (with their dashes, e.g. `--db-pass`) whose value is secret;
    /// `patterns`: extra regular expressions.
    pub fn new(enabled: bool, flags: &[String], patterns: &[String]) -> Result<Self, PatternError> {
        let fixed = [
            // Authorization: Bearer/Basic/Token value, and a lone "Bearer value".
            r"(?i)(?P<keep>authorization:\s*(?:bearer|basic|token|digest)?\s*)[^\s'\x22]+",
            r"(?i)(?P<keep>\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}",
            // scheme://user:password@host
            r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@'\x22]*:)[^@/\s'\x22]+(?:@)",
        ]
        .into_iter()
        .map(str::to_owned)
        // AWS access key ids.
        .chain(std::iter::once(format!(
            r"\b(?:{})[0-9A-Z]{{16}}\b",
            AWS_PREFIXES.join("|")
        )))
        .map(|p| Regex::new(&p).expect("built-in pattern compiles"))
        .collect();
        let user = compile_patterns(patterns)?;
        Ok(Self {
            enabled,
            extra_flags: flags.to_vec(),
            // Only the name and its separator are matched, so that in
            // `-plugin-opt=-pass-through=-lgcc` both names are judged, each whole.
            assignment: Regex::new(r"(?P<name>-{0,2}[A-Za-z_][\w.-]*)(?P<sep>=|:)")
                .expect("assignment pattern compiles"),
            flag_then_value: Regex::new(
                r"(?:^|\s)(?P<name>--?[A-Za-z][\w.-]*)\s+(?P<value>[^\s'\x22-][^\s'\x22]*)",
            )
            .expect("flag pattern compiles"),
            fixed,
            user,
        })
    }

    /// Is this flag or variable name (dashes included) one whose value is secret?
    pub fn is_secret_name(&self, name: &str) -> bool {
        if self.extra_flags.iter().any(|f| f == name) {
            return true;
        }
        let words = name_words(name);
        let Some(last) = words.last() else {
            return false;
        };
        if words.len() == 1 && NOT_SECRET_NAMES.contains(&last.as_str()) {
            return false;
        }
        if SECRET_LAST_WORDS.contains(&last.as_str()) {
            return true;
        }
        words.len() >= 2 && {
            let before = &words[words.len() - 2];
            SECRET_LAST_PAIRS
                .iter()
                .any(|(a, b)| a == before && b == last)
        }
    }

    /// Masks the values of secret names in `NAME=value` and `--flag=value` forms (and
    /// `--flag value` inside a longer text).
    fn named_values(&self, text: &str) -> String {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        // The value is not part of the match, so names inside it are judged too
        // (`--build-arg=NPM_TOKEN=x`).
        for c in self.assignment.captures_iter(text) {
            let (name, sep) = (
                c.name("name").expect("group"),
                c.name("sep").expect("group"),
            );
            // A name starts a word: `1abc=` is no name `abc`.
            if text[..name.start()]
                .chars()
                .next_back()
                .is_some_and(|ch| ch.is_alphanumeric() || matches!(ch, '_' | '.' | '-'))
            {
                continue;
            }
            let name = name.as_str();
            // `:` separates a value only after a flag (`-token:x`), not in `host:port`.
            let flag = name.starts_with('-');
            let start = sep.end();
            let end = text[start..]
                .find(|ch: char| ch.is_whitespace() || matches!(ch, '\'' | '"' | '&' | ';'))
                .map_or(text.len(), |i| start + i);
            if (sep.as_str() == "=" || flag) && end > start && self.is_secret_name(name) {
                spans.push((start, end));
            }
        }
        if text.bytes().any(|b| b.is_ascii_whitespace()) {
            for c in self.flag_then_value.captures_iter(text) {
                let value = c.name("value").expect("group");
                if self.is_secret_name(&c["name"]) {
                    spans.push((value.start(), value.end()));
                }
            }
        }
        if spans.is_empty() {
            return text.to_owned();
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            if start < at {
                continue;
            }
            out.push_str(&text[at..start]);
            out.push_str(MASK);
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// Redacts one text (an argument, a command line).
    pub fn text(&self, text: &str) -> String {
        if !self.enabled {
            return text.to_owned();
        }
        // Every built-in form needs one of these; most arguments (paths, words) have none, and
        // skip the regular expressions.
        let may_hold_secret = text
            .bytes()
            .any(|b| matches!(b, b'=' | b':' | b'@') || b.is_ascii_whitespace())
            || (text.len() >= 20 && AWS_PREFIXES.iter().any(|p| text.contains(p)));
        let mut out = if may_hold_secret {
            self.named_values(text)
        } else {
            text.to_owned()
        };
        for rule in self.fixed.iter().filter(|_| may_hold_secret) {
            if rule.is_match(&out) {
                out = rule
                    .replace_all(&out, |c: &regex::Captures| {
                        let keep = c.name("keep").map_or("", |m| m.as_str());
                        // The URL rule keeps its "@" after the mask.
                        let tail = if c[0].ends_with('@') && keep.contains("://") {
                            "@"
                        } else {
                            ""
                        };
                        format!("{keep}{MASK}{tail}")
                    })
                    .into_owned();
            }
        }
        for rule in &self.user {
            if rule.is_match(&out) {
                out = rule
                    .replace_all(&out, |c: &regex::Captures| match c.name("secret") {
                        Some(secret) => {
                            let whole = c.get(0).expect("group 0");
                            let start = secret.start() - whole.start();
                            let end = secret.end() - whole.start();
                            let s = whole.as_str();
                            format!("{}{MASK}{}", &s[..start], &s[end..])
                        }
                        None => MASK.to_owned(),
                    })
                    .into_owned();
            }
        }
        out
    }

    /// Redacts an argument vector in place: each argument, and the argument after a secret
    /// flag given alone (`--token VALUE`).
    pub fn argv(&self, argv: &mut [String]) {
        if !self.enabled {
            return;
        }
        let mut mask_next = false;
        for arg in argv.iter_mut() {
            if mask_next && !arg.starts_with('-') {
                *arg = MASK.to_owned();
                mask_next = false;
                continue;
            }
            mask_next =
                arg.starts_with('-') && !arg.contains(['=', ' ']) && self.is_secret_name(arg);
            let redacted = self.text(arg);
            if redacted != *arg {
                *arg = redacted;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Redactor::default().argv(&mut v);
        v
    }

    #[test]
    fn common_forms_are_masked() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["mysql", "--password=hunter2", "-u", "root"],
                &["mysql", "--password=***", "-u", "root"],
            ),
            (
                &["gh", "--token", "ghp_abc123", "x"],
                &["gh", "--token", "***", "x"],
            ),
            (
                &["tool", "--api-key=k1", "--db-passwd", "p2"],
                &["tool", "--api-key=***", "--db-passwd", "***"],
            ),
            (
                &[
                    "env",
                    "MY_SECRET=s3",
                    "AWS_SECRET_ACCESS_KEY=abc",
                    "PATH=/bin",
                ],
                &[
                    "env",
                    "MY_SECRET=***",
                    "AWS_SECRET_ACCESS_KEY=***",
                    "PATH=/bin",
                ],
            ),
            (
                &[
                    "curl",
                    "-H",
                    "Authorization: Bearer eyJhbGciOi.x.y",
                    "https://api",
                ],
                &["curl", "-H", "Authorization: Bearer ***", "https://api"],
            ),
            (&["aws", "AKIAIOSFODNN7EXAMPLE"], &["aws", "***"]),
            (
                &["git", "clone", "https://user:tok3n@github.com/o/r.git"],
                &["git", "clone", "https://user:***@github.com/o/r.git"],
            ),
            (
                &["sh", "-c", "psql --password s3cret -h db && echo done"],
                &["sh", "-c", "psql --password *** -h db && echo done"],
            ),
            // Nothing secret: untouched.
            (
                &["make", "-j4", "--directory=/src", "token_list.c"],
                &["make", "-j4", "--directory=/src", "token_list.c"],
            ),
            // A flag alone followed by another flag: nothing to mask.
            (
                &["app", "--token", "--verbose"],
                &["app", "--token", "--verbose"],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(argv(input), *want, "{input:?}");
        }
    }

    /// Real command lines captured by tracing builds and tools (gcc/cc1/as/collect2/ld,
    /// rustc/cargo/clippy, python/pip, make, git, curl, tar and coreutils) with redaction
    /// off: none holds a secret, so none may change.
    const HARMLESS: &str = include_str!("../../../tests/data/redaction/harmless.jsonl");
    /// Command lines in every documented secret form, with the secrets they hold.
    const SECRETS: &str = include_str!("../../../tests/data/redaction/secrets.jsonl");

    #[test]
    fn real_command_lines_without_secrets_come_out_unchanged() {
        let r = Redactor::default();
        let mut checked = 0;
        let mut changed = Vec::new();
        for line in HARMLESS.lines() {
            let original: Vec<String> = serde_json::from_str(line).unwrap();
            let mut v = original.clone();
            r.argv(&mut v);
            if v != original {
                changed.push(format!("{original:?} -> {v:?}"));
            }
            checked += 1;
        }
        assert!(checked >= 200, "the corpus has {checked} command lines");
        assert!(changed.is_empty(), "changed:\n{}", changed.join("\n"));
    }

    #[test]
    fn every_secret_of_the_corpus_is_masked_and_nothing_else_is_lost() {
        let r = Redactor::default();
        let mut secrets = 0;
        for line in SECRETS.lines() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let original: Vec<String> = serde_json::from_value(case["argv"].clone()).unwrap();
            let mut v = original.clone();
            r.argv(&mut v);
            let joined = v.join(" ");
            for secret in case["secrets"].as_array().unwrap() {
                let secret = secret.as_str().unwrap();
                assert!(!joined.contains(secret), "{secret} left in {v:?}");
                secrets += 1;
            }
            assert!(joined.contains(MASK), "nothing masked in {v:?}");
            // The program and the shape of the command survive.
            assert_eq!(v.len(), original.len());
            assert_eq!(v[0], original[0]);
        }
        assert!(secrets >= 25, "{secrets} secrets in the corpus");
    }

    #[test]
    fn secret_words_match_whole_name_words_only() {
        let r = Redactor::default();
        for name in [
            "--password",
            "--db-password",
            "MY_SECRET",
            "AWS_SECRET_ACCESS_KEY",
            "--api-key",
            "apiKey",
            "clientSecret",
            "GITHUB_TOKEN",
            "-Dsonar.password",
            "DB_PWD",
            "--pass",
            "_authToken",
        ] {
            assert!(r.is_secret_name(name), "{name} should be secret");
        }
        for name in [
            "--max-tokens",
            "--tokenizer",
            "--num-passes",
            "-pass-through",
            "--compass",
            "PWD",
            "OLDPWD",
            "--token-file",
            "--bypass",
            "--keyboard",
            "--passive",
            "-plugin-opt",
            "--no-secrets-check",
        ] {
            assert!(!r.is_secret_name(name), "{name} should not be secret");
        }
    }

    #[test]
    fn user_flags_and_patterns() {
        let r = Redactor::new(
            true,
            &["--db".to_owned()],
            &[
                r"ssn=(?P<secret>\d+)".to_owned(),
                r"xoxb-[0-9a-z-]+".to_owned(),
            ],
        )
        .unwrap();
        let mut v: Vec<String> = ["run", "--db", "postgres", "ssn=123", "xoxb-12-ab"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        r.argv(&mut v);
        assert_eq!(v, ["run", "--db", "***", "ssn=***", "***"]);
        let e = Redactor::new(true, &[], &["(".to_owned()]).unwrap_err();
        assert!(e.to_string().contains("redact.patterns"));
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn disabled_changes_nothing() {
        let r = Redactor::new(false, &[], &[]).unwrap();
        let mut v = vec!["x".to_owned(), "--password=p".to_owned()];
        r.argv(&mut v);
        assert_eq!(v[1], "--password=p");
    }
}

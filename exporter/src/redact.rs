//! Redaction of secrets in command lines, applied by the tracker's consumer to every exec event
//! (and to command lines read from `/proc`) before any sink sees it: spans, metrics, Parquet and JSONL only ever get
//! the redacted text. Environment variables are never captured at all.
//!
//! Built-in rules (on by default) cover the common forms: `--password=…` and `--token …` style
//! flags (the value in the same argument or the next one), `NAME_SECRET=…` style assignments,
//! `Authorization: Bearer …` headers, AWS access key ids and URLs with a password. Users add
//! flag names and regular expressions (`[redact]` in the configuration).

use regex::Regex;

/// What replaces a secret.
pub const MASK: &str = "***";

/// How AWS access key ids begin.
const AWS_PREFIXES: [&str; 8] = [
    "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
];

/// Words that make a flag or a variable name secret.
const SECRET_WORDS: &str = r"pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|apikey|access[-_]?key|private[-_]?key|client[-_]?secret|credentials?|auth[-_]?token|session[-_]?key";

#[derive(Debug, thiserror::Error)]
#[error(
    "key `redact.patterns`: pattern {index} ({pattern:?}) is not a valid regular expression: {reason}"
)]
pub struct PatternError {
    pub index: usize,
    pub pattern: String,
    pub reason: String,
}

#[derive(Debug)]
pub struct Redactor {
    enabled: bool,
    /// A whole argument that is a secret flag whose value follows in the next argument.
    flag_alone: Regex,
    /// Rules inside any text; the `keep` group (when present) is kept, the rest of the match
    /// is masked.
    inline: Vec<Regex>,
    /// User patterns: the `secret` group, or the whole match, is masked.
    user: Vec<Regex>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(true, &[], &[]).expect("built-in patterns compile")
    }
}

impl Redactor {
    /// `flags`: extra flag names (with their dashes, e.g. `--db-pass`) whose value is secret;
    /// `patterns`: extra regular expressions.
    pub fn new(enabled: bool, flags: &[String], patterns: &[String]) -> Result<Self, PatternError> {
        let extra_flags: Vec<String> = flags.iter().map(|f| regex::escape(f)).collect();
        let extra = if extra_flags.is_empty() {
            String::new()
        } else {
            format!("|{}", extra_flags.join("|"))
        };
        let flag_alone = Regex::new(&format!(
            r"(?i)^(?:--?[\w.-]*(?:{SECRET_WORDS})[\w.-]*{extra})$"
        ))
        .expect("flag pattern compiles");
        let inline = [
            // --password=value, -token:value (one argument).
            format!(r"(?i)(?P<keep>(?:^|\s)--?[\w.-]*(?:{SECRET_WORDS})[\w.-]*[=:])[^\s'\x22]+"),
            // --password value inside a longer text (sh -c "...").
            format!(
                r"(?i)(?P<keep>\s--?[\w.-]*(?:{SECRET_WORDS})[\w.-]*\s+)[^\s'\x22-][^\s'\x22]*"
            ),
            // NAME_SECRET=value, password=value (variables, settings, query strings).
            format!(r"(?i)(?P<keep>\b[\w.-]*(?:{SECRET_WORDS})[\w.-]*=)[^\s'\x22&;]+"),
            // Authorization: Bearer/Basic/Token value, and a lone "Bearer value".
            r"(?i)(?P<keep>authorization:\s*(?:bearer|basic|token|digest)?\s*)[^\s'\x22]+"
                .to_owned(),
            r"(?i)(?P<keep>\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}".to_owned(),
            // AWS access key ids.
            format!(r"\b(?:{})[0-9A-Z]{{16}}\b", AWS_PREFIXES.join("|")),
            // scheme://user:password@host
            r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@'\x22]*:)[^@/\s'\x22]+(?:@)".to_owned(),
        ]
        .into_iter()
        .chain((!extra_flags.is_empty()).then(|| {
            format!(
                r"(?P<keep>(?:^|\s)(?:{})[=:\s]\s*)[^\s'\x22]+",
                extra_flags.join("|")
            )
        }))
        .map(|p| Regex::new(&p).expect("built-in pattern compiles"))
        .collect();
        let user = patterns
            .iter()
            .enumerate()
            .map(|(index, p)| {
                Regex::new(p).map_err(|e| PatternError {
                    index,
                    pattern: p.clone(),
                    reason: e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            enabled,
            flag_alone,
            inline,
            user,
        })
    }

    /// Redacts one text (an argument, a command line).
    pub fn text(&self, text: &str) -> String {
        if !self.enabled {
            return text.to_owned();
        }
        let mut out = text.to_owned();
        // Every built-in form needs one of these; most arguments (paths, words) have none, and
        // skip the regular expressions.
        let may_hold_secret = text
            .bytes()
            .any(|b| matches!(b, b'=' | b':' | b'@') || b.is_ascii_whitespace())
            || (text.len() >= 20 && AWS_PREFIXES.iter().any(|p| text.contains(p)));
        for rule in self.inline.iter().filter(|_| may_hold_secret) {
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
            mask_next = arg.starts_with('-') && self.flag_alone.is_match(arg);
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

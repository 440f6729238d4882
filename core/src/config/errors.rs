//! How a bad configuration is told: one line naming where the value came from (the file, the
//! variable or the flag), the key, and what is wrong or allowed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0}: not found")]
    Missing(PathBuf),
    #[error("{0}")]
    Invalid(String),
}

/// A section's value that types alone do not rule out: the key and what is wrong. The loader
/// adds where the value came from.
#[derive(Debug)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub(super) fn key<T>(key: &str, message: String) -> Result<T, Invalid> {
        Err(Invalid {
            key: key.to_owned(),
            message,
        })
    }
}

/// Parser messages can span lines (a caret diagram): keep the first line and the last one,
/// which says what was expected.
fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [first, .., last] => format!("{first}: {last}"),
    }
}

/// Where a bad value came from, as the user wrote it: the file, the variable or the flag.
pub(super) fn origin(metadata: Option<&figment::Metadata>, key: &str) -> String {
    let Some(m) = metadata else {
        return String::new();
    };
    match &m.source {
        Some(figment::Source::File(path)) => format!("{}: ", path.display()),
        // Flags name themselves (`FlagValue`).
        Some(figment::Source::Custom(name)) => format!("{name}: "),
        Some(_) => String::new(),
        None if m.name.contains("PIPETRACE_") && !key.is_empty() => format!(
            "environment variable PIPETRACE_{}: ",
            key.to_ascii_uppercase().replace('.', "__")
        ),
        None => format!("{}: ", m.name),
    }
}

/// The known key closest to an unknown one, when one is close enough to be a typo.
fn closest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(unknown, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// One line naming where the bad value came from, which key, and what is wrong.
pub(super) fn describe(err: figment::Error) -> String {
    use figment::error::Kind;
    let mut lines = Vec::new();
    for e in err {
        let path = e.path.join(".");
        let source = origin(e.metadata.as_ref(), &path);
        let message = match &e.kind {
            Kind::UnknownField(field, expected) => {
                // The path ends with the unknown key itself.
                let section = match path.rsplit_once('.') {
                    Some((section, _)) => format!("{section}."),
                    None => String::new(),
                };
                let known: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
                match closest(field, expected) {
                    Some(k) => {
                        format!("unknown key `{section}{field}`: did you mean `{section}{k}`?")
                    }
                    None => format!(
                        "unknown key `{section}{field}`: known keys here are {}",
                        known.join(", ")
                    ),
                }
            }
            kind => {
                let key = if path.is_empty() {
                    String::new()
                } else {
                    format!("key `{path}`: ")
                };
                let text = one_line(&kind.to_string());
                // Whichever key: the parser says when it wanted a duration.
                let hint = if text.contains("expected a duration") {
                    " (a duration looks like 5s, 500ms, 2m or 1h 30m)"
                } else {
                    ""
                };
                format!("{key}{text}{hint}")
            }
        };
        lines.push(format!("{source}{message}"));
    }
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_gets_the_closest_key_and_a_stranger_the_list() {
        assert_eq!(
            closest("argv_max_byte", &["argv_max_bytes", "btf_path"]),
            Some("argv_max_bytes")
        );
        assert_eq!(closest("zzz", &["argv_max_bytes", "btf_path"]), None);
        assert_eq!(one_line("a\n\n  ^^^\nexpected x"), "a: expected x");
    }
}

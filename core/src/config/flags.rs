//! The command-line flags that set configuration keys, defined once ([`FLAGS`]): the flag as
//! typed, the key it sets and the kind of its value. The command line collects the flags given
//! into [`Overrides`] from this table; a value's error names the flag.

use figment::{Figment, providers::Serialized};

/// What a flag's value is, for the configuration layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// Text (paths, addresses, durations: the key's own parsing checks them).
    Text,
    /// A whole number.
    Number,
    /// A switch: present means true.
    Switch,
    /// Repeatable: every value, in order.
    List,
}

/// A flag and the configuration key it sets.
#[derive(Debug)]
pub struct Flag {
    /// As typed: `--argv-max`.
    pub flag: &'static str,
    pub key: &'static str,
    pub kind: FlagKind,
    /// A second key the flag switches on (`--parquet DIR` also turns Parquet on).
    pub enables: Option<&'static str>,
}

impl Flag {
    /// The flag's argument id in the command-line definition (`--argv-max` → `argv_max`).
    pub fn id(&self) -> String {
        self.flag.trim_start_matches('-').replace('-', "_")
    }
}

const fn flag(flag: &'static str, key: &'static str, kind: FlagKind) -> Flag {
    Flag {
        flag,
        key,
        kind,
        enables: None,
    }
}

/// Every flag that sets a configuration key.
pub const FLAGS: &[Flag] = &[
    flag("--jsonl", "output.jsonl", FlagKind::Text),
    flag("--grace", "run.grace_period", FlagKind::Text),
    flag("--fail-on-loss", "run.fail_on_loss", FlagKind::Switch),
    flag("--argv-max", "capture.argv_max_bytes", FlagKind::Number),
    flag("--hide", "scope.hide", FlagKind::List),
    flag("--btf", "capture.btf_path", FlagKind::Text),
    Flag {
        enables: Some("output.parquet"),
        ..flag("--parquet", "output.parquet_dir", FlagKind::Text)
    },
    flag(
        "--metrics-listen",
        "metrics.prometheus_listen",
        FlagKind::Text,
    ),
    flag("--otlp-endpoint", "otlp.endpoint", FlagKind::Text),
    flag("--otlp-protocol", "otlp.protocol", FlagKind::Text),
    flag("--files", "capture.files", FlagKind::Text),
    flag("--files-probes", "capture.file_probes", FlagKind::Switch),
    flag("--file-hashes", "capture.file_hashes", FlagKind::Switch),
    flag("--source", "source.dir", FlagKind::Text),
    flag("--source-allow", "source.allow", FlagKind::List),
    flag(
        "--fail-on-source-change",
        "source.fail_on_change",
        FlagKind::Switch,
    ),
];

/// The flags given, in the order given: the top layer of the configuration.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    given: Vec<(&'static Flag, serde_json::Value)>,
}

impl Overrides {
    /// The flags `(flag, values)` given, each as typed on the command line (a switch with no
    /// value); a later value of a flag replaces an earlier one, a list's values add up. A flag
    /// not in [`FLAGS`] is ignored.
    pub fn from_flags<'a>(given: impl IntoIterator<Item = (&'a str, Vec<String>)>) -> Self {
        let mut overrides = Self::default();
        for (name, values) in given {
            let Some(flag) = FLAGS.iter().find(|f| f.flag == name) else {
                continue;
            };
            let value = match flag.kind {
                FlagKind::Switch => serde_json::Value::Bool(true),
                FlagKind::List => {
                    let mut all = match overrides.take(flag) {
                        Some(serde_json::Value::Array(earlier)) => earlier,
                        _ => Vec::new(),
                    };
                    all.extend(values.into_iter().map(serde_json::Value::String));
                    serde_json::Value::Array(all)
                }
                // Clap checked the number; text it could not parse stays text, and the key's
                // own error names the flag.
                FlagKind::Number => match values.last() {
                    Some(v) => v
                        .parse::<u64>()
                        .map_or_else(|_| serde_json::json!(v), serde_json::Value::from),
                    None => continue,
                },
                FlagKind::Text => match values.into_iter().last() {
                    Some(v) => serde_json::Value::String(v),
                    None => continue,
                },
            };
            overrides.take(flag);
            overrides.given.push((flag, value));
        }
        overrides
    }

    fn take(&mut self, flag: &Flag) -> Option<serde_json::Value> {
        let at = self.given.iter().position(|(f, _)| f.flag == flag.flag)?;
        Some(self.given.remove(at).1)
    }

    pub(super) fn into_figment(self) -> Figment {
        let mut f = Figment::new();
        for (flag, value) in self.given {
            f = f.merge(FlagValue::new(flag.flag, flag.key, value));
            if let Some(key) = flag.enables {
                f = f.merge(FlagValue::new(
                    flag.flag,
                    key,
                    serde_json::Value::Bool(true),
                ));
            }
        }
        f
    }
}

/// A value given by a command-line flag: errors about it name the flag.
struct FlagValue {
    flag: &'static str,
    value: Serialized<serde_json::Value>,
}

impl FlagValue {
    fn new(flag: &'static str, key: &str, value: serde_json::Value) -> Self {
        Self {
            flag,
            value: Serialized::default(key, value),
        }
    }
}

impl figment::Provider for FlagValue {
    fn metadata(&self) -> figment::Metadata {
        let name = format!("flag {}", self.flag);
        figment::Metadata::named(name.clone()).source(figment::Source::Custom(name))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.value.data()
    }
}

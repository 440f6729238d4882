//! The layers, lowest first: built-in defaults < `OTEL_*` variables < `--config FILE` (TOML)
//! < `PIPETRACE_SECTION__KEY` variables < command-line flags; then every section's own checks.

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};

use super::{
    Config, ConfigError, Invalid, Overrides,
    errors::{describe, origin},
};

impl Config {
    pub fn load(file: Option<&std::path::Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(file, overrides, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with the environment given as a lookup (tests pass their own).
    pub fn load_with_env(
        file: Option<&std::path::Path>,
        overrides: Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(super::otel_env::layer(&env).map_err(ConfigError::Invalid)?);
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Missing(path.to_path_buf()));
            }
            // SAFETY: geteuid has no preconditions.
            let euid = unsafe { libc::geteuid() };
            let invoker = env("SUDO_UID").and_then(|u| u.parse().ok());
            check_writers(path, euid, invoker)?;
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment
            // Only SECTION__KEY variables are configuration; other PIPETRACE_* variables (build
            // or test switches) are not this layer's business.
            .merge(
                Env::prefixed("PIPETRACE_")
                    .filter(|key| key.as_str().contains("__"))
                    .split("__"),
            )
            .merge(overrides.into_figment());
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        config.validate(|key| origin(figment.find_metadata(key), key))?;
        Ok(config)
    }

    /// The defaults with one TOML document on top, validated (no environment, no flags): what
    /// a configuration file alone means. Never panics, whatever the text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        config.validate(|_| String::new())?;
        Ok(config)
    }

    /// Checks what types alone cannot, section by section; `origin` names where a key's value
    /// came from.
    fn validate(&self, origin: impl Fn(&str) -> String) -> Result<(), ConfigError> {
        let checks = [
            self.capture.validate(),
            self.redact.validate(),
            self.scope.validate(),
            self.run.validate(),
            self.output.validate(),
            self.metrics.validate(),
            self.tracker.validate(),
            self.otlp.validate(),
            self.diagnosis.validate(),
            self.history.validate(),
            self.source.validate(),
        ];
        match checks.into_iter().find_map(Result::err) {
            Some(Invalid { key, message }) => Err(ConfigError::Invalid(format!(
                "{}key `{key}`: {message}",
                origin(&key)
            ))),
            None => Ok(()),
        }
    }
}

/// Running as root, the agent reads only a configuration that no other user can change: it
/// decides what the agent loads into the kernel and where it writes as root. The file must
/// belong to root (or to the user who ran sudo), be writable by its owner only, and sit in a
/// directory where others cannot replace it.
pub(super) fn check_writers(
    path: &Path,
    euid: u32,
    invoker: Option<u32>,
) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    if euid != 0 {
        return Ok(());
    }
    let unsafe_file = |why: String| {
        ConfigError::Invalid(format!(
            "config file {}: {why}; running as root, the agent refuses a configuration other users can change",
            path.display()
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| unsafe_file(e.to_string()))?;
    if meta.uid() != 0 && Some(meta.uid()) != invoker {
        return Err(unsafe_file(format!(
            "owned by uid {} (chown root {})",
            meta.uid(),
            path.display()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_file(format!(
            "writable by {} (mode {:04o}; chmod go-w {})",
            if meta.mode() & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            meta.mode() & 0o7777,
            path.display()
        )));
    }
    let dir = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    if let Some(dir) = dir
        && let Ok(d) = std::fs::metadata(&dir)
        && d.mode() & 0o002 != 0
        && d.mode() & 0o1000 == 0
    {
        return Err(unsafe_file(format!(
            "its directory {} is writable by everyone without the sticky bit (anyone can replace the file)",
            dir.display()
        )));
    }
    Ok(())
}

//! Where `[output.object_store]` points, resolved with the standard AWS variables and shared
//! credentials file: the uploader's client and the query side's httpfs read the same bucket
//! the same way.

use std::path::Path;

use super::ObjectStoreSection;

/// Keys of one profile of an AWS shared credentials file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// A set, non-blank environment variable.
pub fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The S3-compatible server's URL: the configuration's, else `AWS_ENDPOINT_URL`; empty for AWS.
pub fn endpoint(section: &ObjectStoreSection) -> String {
    let configured = section.endpoint.trim();
    if configured.is_empty() {
        env_nonempty("AWS_ENDPOINT_URL").unwrap_or_default()
    } else {
        configured.to_owned()
    }
}

/// How object URLs are formed, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlStyle {
    /// `http://endpoint/bucket/key`.
    Path(&'static str),
    /// `http://bucket.endpoint/key` (AWS's default).
    VirtualHosted,
}

impl UrlStyle {
    pub fn is_path(self) -> bool {
        matches!(self, Self::Path(_))
    }

    /// One line for people: the style and the reason it was chosen.
    pub fn describe(self) -> String {
        match self {
            Self::Path(why) => format!("path-style ({why})"),
            Self::VirtualHosted => "virtual-hosted (bucket name in the host name)".to_owned(),
        }
    }
}

/// Path-style where it is asked for or where a bucket's host name could not resolve: an IP
/// literal or `localhost` endpoint (`pipetrace.127.0.0.1` is no name), or a server named only
/// by `AWS_ENDPOINT_URL` (self-hosted servers want path-style).
pub fn url_style(section: &ObjectStoreSection) -> UrlStyle {
    if section.path_style {
        return UrlStyle::Path("path_style = true");
    }
    let endpoint = endpoint(section);
    if endpoint.is_empty() {
        return UrlStyle::VirtualHosted;
    }
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint.as_str(), |(_, rest)| rest);
    let authority = authority.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.parse::<std::net::IpAddr>().is_ok() || host.eq_ignore_ascii_case("localhost") {
        UrlStyle::Path("the endpoint is an IP address or localhost")
    } else if section.endpoint.trim().is_empty() {
        UrlStyle::Path("an endpoint from AWS_ENDPOINT_URL")
    } else {
        UrlStyle::VirtualHosted
    }
}

/// The credentials file and profile the configuration (or the AWS variables) name.
pub fn credentials_source(section: &ObjectStoreSection) -> (std::path::PathBuf, String) {
    let file = if section.credentials_file.is_empty() {
        env_nonempty("AWS_SHARED_CREDENTIALS_FILE")
            .map(Into::into)
            .unwrap_or_else(|| {
                let home = env_nonempty("HOME").unwrap_or_else(|| "/root".into());
                Path::new(&home).join(".aws/credentials")
            })
    } else {
        section.credentials_file.clone().into()
    };
    let profile = if section.profile.is_empty() {
        env_nonempty("AWS_PROFILE").unwrap_or_else(|| "default".into())
    } else {
        section.profile.clone()
    };
    (file, profile)
}

/// The keys to use: the AWS variables, else the configured profile of the shared credentials
/// file (`None`: neither has any).
pub fn credentials(section: &ObjectStoreSection) -> Result<Option<FileCredentials>, String> {
    if let Some(id) = env_nonempty("AWS_ACCESS_KEY_ID") {
        return Ok(Some(FileCredentials {
            access_key_id: id,
            secret_access_key: env_nonempty("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
            session_token: env_nonempty("AWS_SESSION_TOKEN"),
        }));
    }
    let (file, profile) = credentials_source(section);
    read_credentials_file(&file, &profile)
}

/// The configured region, else `AWS_REGION` / `AWS_DEFAULT_REGION`, else us-east-1.
pub fn region(section: &ObjectStoreSection) -> String {
    [section.region.clone()]
        .into_iter()
        .chain(env_nonempty("AWS_REGION"))
        .chain(env_nonempty("AWS_DEFAULT_REGION"))
        .find(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".into())
}

/// `profile`'s keys in the shared credentials file at `path`: `None` when the file does not
/// exist; an error when it cannot be read or the profile lacks a key.
pub fn read_credentials_file(
    path: &Path,
    profile: &str,
) -> Result<Option<FileCredentials>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!("AWS credentials file {}: {e}", path.display()));
        }
    };
    let ini = ini::Ini::load_from_str(&text)
        .map_err(|e| format!("AWS credentials file {}: {e}", path.display()))?;
    let Some(section) = ini.section(Some(profile)) else {
        return Ok(None);
    };
    let key = |k: &str| section.get(k).map(str::trim).filter(|v| !v.is_empty());
    match (key("aws_access_key_id"), key("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok(Some(FileCredentials {
            access_key_id: id.to_owned(),
            secret_access_key: secret.to_owned(),
            session_token: key("aws_session_token").map(str::to_owned),
        })),
        _ => Err(format!(
            "AWS credentials file {}: profile [{profile}] needs aws_access_key_id and aws_secret_access_key",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_profile_of_the_shared_credentials_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[ci]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=T\n[half]\naws_access_key_id=E\n",
        )
        .unwrap();
        let ci = read_credentials_file(&path, "ci").unwrap().unwrap();
        assert_eq!(
            (ci.access_key_id.as_str(), ci.secret_access_key.as_str()),
            ("C", "D")
        );
        assert_eq!(ci.session_token.as_deref(), Some("T"));
        assert_eq!(
            read_credentials_file(&path, "default")
                .unwrap()
                .unwrap()
                .access_key_id,
            "A"
        );
        assert!(read_credentials_file(&path, "nope").unwrap().is_none());
        let half = read_credentials_file(&path, "half")
            .unwrap_err()
            .to_string();
        assert!(
            half.contains("[half] needs aws_access_key_id and aws_secret_access_key"),
            "{half}"
        );
        assert!(
            read_credentials_file(&dir.path().join("none"), "default")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn ip_and_localhost_endpoints_are_path_style_named_hosts_are_not() {
        let style = |endpoint: &str, path_style: bool| {
            url_style(&ObjectStoreSection {
                endpoint: endpoint.into(),
                path_style,
                ..Default::default()
            })
        };
        for endpoint in [
            "http://127.0.0.1:8333",
            "http://127.0.0.1",
            "https://[::1]:9000/",
            "localhost:9000",
            "http://LOCALHOST",
            "http://10.1.2.3:80/base",
        ] {
            assert_eq!(
                style(endpoint, false),
                UrlStyle::Path("the endpoint is an IP address or localhost"),
                "{endpoint}"
            );
        }
        assert_eq!(
            style("https://minio.ci.internal", false),
            UrlStyle::VirtualHosted
        );
        assert_eq!(
            style("https://minio.ci.internal", true),
            UrlStyle::Path("path_style = true")
        );
        assert!(
            style("https://minio.ci.internal", true)
                .describe()
                .starts_with("path-style")
        );
    }
}

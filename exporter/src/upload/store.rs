//! The S3-compatible bucket: a client built from `[output.object_store]` and the standard AWS
//! variables or shared credentials file, and the one write the uploader needs — create an
//! object once, never overwrite one.

use std::{path::Path, sync::Arc, time::Duration};

use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    WriteMultipart, aws::AmazonS3Builder, path::Path as ObjectPath,
};
use tokio::io::AsyncReadExt;

use crate::config::{ObjectStoreSection, store_url_parts};

/// Why a store could not be set up or an object not written: one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Upload(String),
}

/// Part size of multipart uploads: parts in flight are what an upload holds in memory.
const PART_BYTES: usize = 8 << 20;
const PARTS_IN_FLIGHT: usize = 2;

pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket/prefix`, for messages.
    pub url: String,
    prefix: String,
    multipart_bytes: u64,
}

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
pub fn credentials(section: &ObjectStoreSection) -> Result<Option<FileCredentials>, StoreError> {
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
) -> Result<Option<FileCredentials>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StoreError::Config(format!(
                "AWS credentials file {}: {e}",
                path.display()
            )));
        }
    };
    let ini = ini::Ini::load_from_str(&text)
        .map_err(|e| StoreError::Config(format!("AWS credentials file {}: {e}", path.display())))?;
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
        _ => Err(StoreError::Config(format!(
            "AWS credentials file {}: profile [{profile}] needs aws_access_key_id and aws_secret_access_key",
            path.display()
        ))),
    }
}

impl Bucket {
    /// The client for `section` (validated with the configuration). No request is made yet.
    pub fn open(section: &ObjectStoreSection) -> Result<Self, StoreError> {
        let url = section.url.trim().to_owned();
        let (bucket, prefix) = store_url_parts(&url)
            .map_err(|m| StoreError::Config(format!("output.object_store.url: {m}")))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        builder = builder.with_region(region(section));
        let endpoint = endpoint(section);
        if !endpoint.is_empty() {
            builder = builder.with_endpoint(&endpoint);
        }
        builder = builder.with_virtual_hosted_style_request(!url_style(section).is_path());
        // The AWS variables are read by `from_env`; the credentials file here.
        if env_nonempty("AWS_ACCESS_KEY_ID").is_none() {
            match credentials(section)? {
                Some(c) => {
                    builder = builder
                        .with_access_key_id(c.access_key_id)
                        .with_secret_access_key(c.secret_access_key);
                    if let Some(token) = c.session_token {
                        builder = builder.with_token(token);
                    }
                }
                // A self-hosted server has no instance metadata service to ask: say what is
                // missing instead of sending a request elsewhere.
                None if !endpoint.is_empty() => {
                    let (file, profile) = credentials_source(section);
                    return Err(StoreError::Config(format!(
                        "{url}: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add a [{profile}] profile to {}",
                        file.display()
                    )));
                }
                None => {}
            }
        }
        // The HTTP client uses whichever rustls provider the process installed: ring, as the
        // OTLP exporters do.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Few quick retries per request: an outage is retried by the uploader's own backoff, and
        // the end of a run must not wait long for a server that is down.
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        // allow_http lives in the client options, which replace the builder's.
        let client = ClientOptions::new()
            .with_allow_http(endpoint.starts_with("http://"))
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(120));
        let store = builder
            .with_retry(retry)
            .with_client_options(client)
            .build()
            .map_err(|e| StoreError::Config(format!("{url}: {}", first_line(&e.to_string()))))?;
        Ok(Self {
            store: Arc::new(store),
            url,
            prefix,
            multipart_bytes: section.multipart_bytes,
        })
    }

    /// The object's key for `relative` (`events/host=H/date=D/F.parquet`).
    pub fn key(&self, relative: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(relative)
        } else {
            ObjectPath::from(format!("{}/{relative}", self.prefix))
        }
    }

    /// Creates the object `relative` from `file`, unless a complete copy is already there (an
    /// upload confirmed by the server whose confirmation this agent did not see). Never
    /// overwrites: a different object under that key is an error.
    pub async fn create(&self, relative: &str, file: &Path) -> Result<(), StoreError> {
        let key = self.key(relative);
        let size = tokio::fs::metadata(file)
            .await
            .map_err(|e| StoreError::Upload(format!("{}: {e}", file.display())))?
            .len();
        let result = if size >= self.multipart_bytes {
            // Multipart completion cannot be made conditional here: look first. Keys are unique
            // to this agent, so nothing else creates this one in between.
            match self.store.head(&key).await {
                Ok(meta) => return self.same_size(&key, meta.size, size),
                Err(object_store::Error::NotFound { .. }) => self.put_parts(&key, file).await,
                Err(e) => Err(e),
            }
        } else {
            let bytes = tokio::fs::read(file)
                .await
                .map_err(|e| StoreError::Upload(format!("{}: {e}", file.display())))?;
            let options = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            self.store
                .put_opts(&key, PutPayload::from(bytes), options)
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let meta = self.store.head(&key).await.map_err(|e| self.describe(&e))?;
                self.same_size(&key, meta.size, size)
            }
            Err(e) => Err(self.describe(&e)),
        }
    }

    fn same_size(&self, key: &ObjectPath, have: u64, want: u64) -> Result<(), StoreError> {
        if have == want {
            Ok(())
        } else {
            Err(StoreError::Upload(format!(
                "{}/{key}: another object ({have} bytes, not {want}) already has this key; kept locally",
                self.bucket_url()
            )))
        }
    }

    /// Uploads `file` in parts; aborts the upload (no part left behind) when a part fails.
    async fn put_parts(&self, key: &ObjectPath, file: &Path) -> object_store::Result<()> {
        let upload = self.store.put_multipart(key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let result: object_store::Result<()> = async {
            let mut f = tokio::fs::File::open(file)
                .await
                .map_err(|e| generic(e.to_string()))?;
            let mut buf = vec![0u8; PART_BYTES];
            loop {
                let n = f.read(&mut buf).await.map_err(|e| generic(e.to_string()))?;
                if n == 0 {
                    return Ok(());
                }
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.write(&buf[..n]);
            }
        }
        .await;
        match result {
            Ok(()) => writer.finish().await.map(|_| ()),
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    fn bucket_url(&self) -> String {
        let bucket = self.url.trim_start_matches("s3://");
        let bucket = bucket.split('/').next().unwrap_or(bucket);
        format!("s3://{bucket}")
    }

    /// One line: what failed and what would fix it.
    pub fn describe(&self, e: &object_store::Error) -> StoreError {
        let reason = match e {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                "access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the credentials file) and the bucket's policy".to_owned()
            }
            object_store::Error::NotFound { .. } => "no such bucket".to_owned(),
            other => with_cause(other),
        };
        StoreError::Upload(format!("{}: {reason}", self.url))
    }
}

/// The error and its innermost cause (`connection refused`, not only `HTTP error`).
fn with_cause(e: &object_store::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = first_line(&e.to_string());
    let root = first_line(&cause.to_string());
    if text.contains(&root) {
        text
    } else {
        format!("{text}: {root}")
    }
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "local spool",
        source: message.into(),
    }
}

/// The error's first line without the request's details: enough to act on.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(300).collect()
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

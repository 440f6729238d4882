//! The S3-compatible bucket: a client built from `[output.object_store]` and the standard AWS
//! variables or shared credentials file, and the one write the uploader needs — create an
//! object once, never overwrite one.

use std::{path::Path, sync::Arc, time::Duration};

use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    WriteMultipart, aws::AmazonS3Builder, path::Path as ObjectPath,
};
use tokio::io::AsyncReadExt;

use crate::config::{
    ObjectStoreSection, credentials, credentials_source, endpoint, env_nonempty, region,
    store_url_parts, url_style,
};

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

/// An object in the bucket, as listed.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its key under the bucket's prefix: `DATASET/host=H/date=D/NAME.parquet`.
    pub relative: String,
    pub size: u64,
    pub modified: std::time::SystemTime,
}

pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket/prefix`, for messages.
    pub url: String,
    prefix: String,
    multipart_bytes: u64,
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
            match credentials(section).map_err(StoreError::Config)? {
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

    /// The objects under `relative` (`processes/`): their keys relative to the prefix, sizes
    /// and when each was written.
    pub async fn list(&self, relative: &str) -> Result<Vec<Listed>, StoreError> {
        use futures_util::TryStreamExt;
        let under = self.key(relative);
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&under))
            .try_collect()
            .await
            .map_err(|e| self.describe(&e))?;
        let strip = match self.prefix.as_str() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        Ok(objects
            .into_iter()
            .map(|o| Listed {
                relative: o
                    .location
                    .as_ref()
                    .strip_prefix(&strip)
                    .unwrap_or(o.location.as_ref())
                    .to_owned(),
                size: o.size,
                modified: o.last_modified.into(),
            })
            .collect())
    }

    /// Bytes `range` of the object `relative`.
    pub async fn read_range(
        &self,
        relative: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, StoreError> {
        let bytes = self
            .store
            .get_range(&self.key(relative), range)
            .await
            .map_err(|e| self.describe(&e))?;
        Ok(bytes.to_vec())
    }

    /// The object `relative`, written to `file`.
    pub async fn download(&self, relative: &str, file: &Path) -> Result<(), StoreError> {
        let bytes = self
            .store
            .get(&self.key(relative))
            .await
            .map_err(|e| self.describe(&e))?
            .bytes()
            .await
            .map_err(|e| self.describe(&e))?;
        tokio::fs::write(file, &bytes)
            .await
            .map_err(|e| StoreError::Upload(format!("{}: {e}", file.display())))
    }

    /// Deletes the object `relative` (gone already is done).
    pub async fn delete(&self, relative: &str) -> Result<(), StoreError> {
        match self.store.delete(&self.key(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
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

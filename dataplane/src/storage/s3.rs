//! An object store on S3 or any S3-compatible service (MinIO, Ceph, moto, ...).
//!
//! Nothing of the AWS SDK leaks out of this file: callers get [`StorageError`]s whose variants say
//! what to do (`NotFound`, retry on `Unavailable`, fix the config on `Config`). The SDK's standard
//! retry (exponential backoff with jitter) handles transient failures inside one call; what is
//! still failing after `max_attempts` comes back as `Unavailable`.

use std::fmt;
use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{
    ObjectMeta, ObjectStore, S3Config, StorageError, check_range, resolve_range, validate_key, validate_prefix,
};

/// Fixed credentials, for tests against a local S3 server and for deployments that do not use
/// the standard AWS environment. Production normally leaves credentials to the default chain
/// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profile, web identity, IMDS).
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// The access key id (`AKIA...`).
    pub access_key_id: String,
    /// The secret key; never printed.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl StaticCredentials {
    /// Credentials without a session token.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self { access_key_id: access_key_id.into(), secret_access_key: secret_access_key.into(), session_token: None }
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Objects in an S3 bucket, optionally under a key prefix.
#[derive(Clone)]
pub struct S3Store {
    /// The SDK client (cheap to clone, holds the connection pool).
    client: Client,
    /// Bucket every object lives in.
    bucket: String,
    /// Prepended to every key: empty, or ending with `/`.
    prefix: String,
    /// `max-keys` of each listing request; `None` leaves the server's default (1000).
    list_page_size: Option<i32>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store").field("bucket", &self.bucket).field("prefix", &self.prefix).finish()
    }
}

impl S3Store {
    /// A store using credentials from the standard AWS environment.
    pub async fn new(cfg: &S3Config) -> Result<Self, StorageError> {
        Self::build(cfg, None).await
    }

    /// A store using fixed credentials instead of the AWS environment.
    pub async fn with_credentials(cfg: &S3Config, credentials: StaticCredentials) -> Result<Self, StorageError> {
        Self::build(cfg, Some(credentials)).await
    }

    /// Makes every listing request ask for at most `n` keys (S3's default and maximum is 1000).
    /// Tests use it to exercise pagination without creating thousands of objects.
    pub fn with_list_page_size(mut self, n: u32) -> Self {
        self.list_page_size = Some(i32::try_from(n.clamp(1, 1000)).unwrap_or(1000));
        self
    }

    async fn build(cfg: &S3Config, credentials: Option<StaticCredentials>) -> Result<Self, StorageError> {
        cfg.validate().map_err(|e| StorageError::Config(e.to_string()))?;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(cfg.connect_timeout.get())
            .operation_timeout(cfg.operation_timeout.get())
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(cfg.max_attempts));
        if let Some(c) = credentials {
            loader = loader.credentials_provider(Credentials::new(
                c.access_key_id,
                c.secret_access_key,
                c.session_token,
                None,
                "norn-static",
            ));
        }
        let sdk = loader.load().await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(cfg.path_style())
            // Trailing checksums (aws-chunked uploads) are the SDK default but many
            // S3-compatible servers reject them; send checksums only where S3 requires them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        if let Some(endpoint) = &cfg.endpoint {
            s3 = s3.endpoint_url(endpoint);
        }
        let prefix = match cfg.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => String::new(),
            Some(p) => format!("{p}/"),
        };
        Ok(Self { client: Client::from_conf(s3.build()), bucket: cfg.bucket.clone(), prefix, list_page_size: None })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Turns an SDK failure of `op` on `key` into the error a caller can act on.
    fn error<E>(&self, op: &str, key: &str, err: SdkError<E>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let what = format!("s3 {op} of {key:?} in bucket {:?}", self.bucket);
        let detail = error_chain(&err);
        match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                match (status, service.err().code()) {
                    (_, Some("NoSuchBucket")) => {
                        StorageError::Config(format!("bucket {:?} does not exist", self.bucket))
                    }
                    (404, _) | (_, Some("NoSuchKey")) => StorageError::NotFound { key: key.to_string() },
                    (403, _) | (_, Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch")) => {
                        StorageError::PermissionDenied(format!("{what}: {detail}"))
                    }
                    (416, _) | (_, Some("InvalidRange")) => {
                        StorageError::Invalid(format!("{what}: range not satisfiable"))
                    }
                    (408 | 429 | 500..=599, _)
                    | (_, Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable")) => {
                        StorageError::Unavailable(format!("{what}: {detail}"))
                    }
                    _ => StorageError::Invalid(format!("{what}: {detail}")),
                }
            }
            // Building the request failed: bad endpoint or settings, not a transient problem.
            SdkError::ConstructionFailure(_) => StorageError::Config(format!("{what}: cannot build request: {detail}")),
            SdkError::DispatchFailure(d) if d.is_user() => StorageError::Config(format!("{what}: {detail}")),
            // Timeouts, connection failures, truncated or unparseable responses.
            _ => StorageError::Unavailable(format!("{what}: {detail}")),
        }
    }

    async fn read_body(&self, key: &str, body: ByteStream) -> Result<Bytes, StorageError> {
        body.collect().await.map(|b| b.into_bytes()).map_err(|e| {
            StorageError::Unavailable(format!(
                "s3 get of {key:?} in bucket {:?}: reading the body: {}",
                self.bucket,
                error_chain(&e)
            ))
        })
    }
}

/// An error and its sources on one line (`dispatch failure: io error: connection refused`),
/// without the SDK's debug dump of the whole request.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let msg = e.to_string();
        // Wrappers often repeat their source's message; keep the chain readable.
        if !out.ends_with(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        source = e.source();
    }
    out
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        validate_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.error("put", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        validate_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("get", key, e))?;
        self.read_body(key, out.body).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        validate_key(key)?;
        check_range(key, &range)?;
        if range.is_empty() {
            // HTTP cannot ask for zero bytes; an empty range only needs the object to exist.
            return match self.head(key).await? {
                Some(_) => Ok(Bytes::new()),
                None => Err(StorageError::NotFound { key: key.to_string() }),
            };
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| self.error("ranged get", key, e))?;
        let ranged = out.content_range.is_some();
        let data = self.read_body(key, out.body).await?;
        if ranged {
            return Ok(data);
        }
        // The server ignored the Range header and sent the whole object.
        let r = resolve_range(key, &range, data.len() as u64)?;
        Ok(data.slice(r.start as usize..r.end as usize))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        validate_key(key)?;
        match self.client.head_object().bucket(&self.bucket).key(self.full_key(key)).send().await {
            Ok(out) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: out.content_length.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                last_modified: out
                    .last_modified
                    .and_then(|t| SystemTime::try_from(t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            })),
            Err(e) => match self.error("head", key, e) {
                StorageError::NotFound { .. } => Ok(None),
                e => Err(e),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        validate_prefix(prefix)?;
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full_key(prefix))
            .set_max_keys(self.list_page_size)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("list", prefix, e))?;
            for object in page.contents.unwrap_or_default() {
                let Some(key) = object.key.as_deref().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                out.push(ObjectMeta {
                    key: key.to_string(),
                    size: object.size.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    last_modified: object
                        .last_modified
                        .and_then(|t| SystemTime::try_from(t).ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn list_prefixes(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        validate_prefix(prefix)?;
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full_key(prefix))
            .delimiter("/")
            .set_max_keys(self.list_page_size)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("list", prefix, e))?;
            for p in page.common_prefixes.unwrap_or_default() {
                if let Some(p) = p.prefix.as_deref().and_then(|p| p.strip_prefix(&self.prefix)) {
                    out.push(p.to_string());
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        match self.client.delete_object().bucket(&self.bucket).key(self.full_key(key)).send().await {
            Ok(_) => Ok(()),
            Err(e) => match self.error("delete", key, e) {
                StorageError::NotFound { .. } => Ok(()),
                e => Err(e),
            },
        }
    }
}

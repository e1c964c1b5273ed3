//! The media store's shared side: S3-compatible object storage (`[media.s3]`), through the maintained
//! `object_store` crate (its SigV4 signing, retries and presigning). Every stored file is also put here
//! under `<prefix>/<kind>/<name>`, so any replica can serve any link.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};

use super::kind::MediaKind;
use crate::config::S3Config;

pub struct RemoteMedia {
    store: Arc<AmazonS3>,
    prefix: String,
    bucket: String,
    /// Links redirect to presigned URLs valid this long (`presign_secs`), instead of being proxied.
    presign: Option<Duration>,
}

impl RemoteMedia {
    pub fn open(cfg: &S3Config) -> Result<Self, String> {
        // object_store's client is our reqwest, built without a TLS provider of its own.
        crate::install_crypto_provider();
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&cfg.bucket).with_region(&cfg.region);
        if let Some(endpoint) = &cfg.endpoint {
            b = b.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(k) = &cfg.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &cfg.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        let store =
            b.with_virtual_hosted_style_request(!cfg.path_style).build().map_err(|e| format!("media.s3: {e}"))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: cfg.prefix.trim_matches('/').to_owned(),
            bucket: cfg.bucket.clone(),
            presign: (cfg.presign_secs > 0).then(|| Duration::from_secs(cfg.presign_secs)),
        })
    }

    fn key(&self, kind: MediaKind, name: &str) -> Path {
        match self.prefix.as_str() {
            "" => Path::from(format!("{}/{name}", kind.as_str())),
            p => Path::from(format!("{p}/{}/{name}", kind.as_str())),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub async fn put(
        &self,
        kind: MediaKind,
        name: &str,
        bytes: Bytes,
        content_type: &'static str,
    ) -> Result<(), String> {
        let attributes = Attributes::from_iter([(Attribute::ContentType, content_type)]);
        let opts = PutOptions { attributes, ..PutOptions::default() };
        self.store
            .put_opts(&self.key(kind, name), PutPayload::from(bytes), opts)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot put {name} into bucket {}: {e}", self.bucket))
    }

    /// The object, or `None` when the bucket has no such key.
    pub async fn get(&self, kind: MediaKind, name: &str) -> Result<Option<Bytes>, String> {
        match self.store.get(&self.key(kind, name)).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| format!("cannot read {name} from the bucket: {e}")),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(format!("cannot read {name} from bucket {}: {e}", self.bucket)),
        }
    }

    /// A presigned GET URL, when links are meant to redirect.
    pub async fn presigned(&self, kind: MediaKind, name: &str) -> Option<Result<String, String>> {
        let valid = self.presign?;
        let signed = self.store.signed_url(object_store::signer::Method::GET, &self.key(kind, name), valid).await;
        Some(signed.map(|u| u.to_string()).map_err(|e| format!("cannot presign {name}: {e}")))
    }
}

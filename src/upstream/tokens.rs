//! What every upstream's token pool shows and takes, whoever implements it: the nouns of token
//! administration (the admin API, the console) and of the news replicas share about their tokens.
//! `Upstream::tokens` hands out the pool itself.

use std::sync::Arc;

/// A stable, non-secret name for a token: the first 12 hex digits of its SHA-256.
pub fn token_id(token: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(token.as_bytes())[..6])
}

/// One product's quota as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ProductInfo {
    pub remaining: Option<u32>,
    pub cooldown_secs: Option<u64>,
    /// Unix seconds when a resting product is back.
    pub refills_at: Option<u64>,
}

/// What the admin API shows of one token (the token itself only masked).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub token: String,
    /// `active`, `cooling`, `expired`, `flagged` (answers with canned media) or `disabled`.
    pub status: &'static str,
    pub enabled: bool,
    pub note: Option<String>,
    /// Requests in flight with it on this replica.
    pub in_flight: u32,
    /// Requests in flight with it on the other replicas (their latest word, every half second).
    pub in_flight_elsewhere: u32,
    /// Replicas that see it in another state than this one does (replica → state), from their
    /// reports; empty in one process.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub elsewhere: std::collections::BTreeMap<String, String>,
    pub fail_count: u32,
    pub remaining: Option<u32>,
    pub cooldown_secs: Option<u64>,
    /// The last upstream error seen with this token, and when (unix seconds).
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    /// When the upstream last answered a quota refresh for it (unix seconds).
    pub checked_at: Option<u64>,
    /// The token's own proxy, password hidden.
    pub proxy: Option<String>,
    /// The account's plan (`basic` = free, `supergrok`, `heavy`), once the upstream told it.
    pub plan: Option<&'static str>,
    /// `config` (given at start; comes back on restart) or `admin` (added at run time; kept in the
    /// state dir when there is one).
    pub source: &'static str,
    /// Per product (`image`, `imageEdit`, `video`, `video720p`, `imagePro`: images in quality mode).
    pub products: std::collections::BTreeMap<&'static str, ProductInfo>,
}

/// What the console may change of a token (`None` = leave as is; `Some(None)` = clear).
#[derive(Debug, Clone, Default)]
pub struct TokenPatch {
    pub enabled: Option<bool>,
    pub note: Option<Option<String>>,
    pub proxy: Option<Option<String>>,
}

/// What an import did, entry by entry.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub format: Format,
    pub added: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub lines: Vec<ImportLine>,
}

/// One entry of an imported file, and what became of it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImportLine {
    /// The file's line (txt, jsonl) or the entry's position (json), from 1.
    pub line: usize,
    /// `added`, `duplicate` or `rejected`.
    pub result: &'static str,
    pub id: Option<String>,
    /// Masked.
    pub token: Option<String>,
    pub reason: Option<String>,
}

/// Why a token could not be changed.
#[derive(Debug)]
pub enum TokenChangeError {
    /// No such token.
    NotFound,
    /// It comes from the config: it is changed there.
    ReadOnly,
    /// The change itself is refused (a proxy the transport cannot use).
    Invalid(String),
    /// Changed, but not kept in the state dir.
    Storage(String),
}

/// One token as an export writes it: the full value (the operator's backup), with what the console
/// set on it. Also what the shared token book keeps of a token made in the console.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportedToken {
    pub token: String,
    pub proxy: Option<String>,
    pub note: Option<String>,
    pub enabled: bool,
}

impl ExportedToken {
    /// `TOKEN` or `TOKEN|PROXY_URL`, the way a token file or the config gives it.
    pub fn entry(&self) -> String {
        self.proxy.as_ref().map_or_else(|| self.token.clone(), |p| format!("{}|{p}", self.token))
    }
}

/// The kind of token file an import read (detected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Txt,
    Json,
    Jsonl,
}

/// Told of every `TokenEvent` a pool makes (`TokenPool::observe`).
pub type Observer = Arc<dyn Fn(TokenEvent) + Send + Sync>;

/// Requests in flight per token id.
pub type InFlightCounts = std::collections::HashMap<String, u32>;

/// A change an upstream answer made to one token (times as unix ms, so another process can apply it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenEvent {
    /// One product's quota: what is left and until when it rests (`None` = available).
    Product { token: String, product: String, remaining: Option<u32>, until_ms: Option<u64> },
    /// The whole token rests (its proxy failed).
    Cooling { token: String, until_ms: u64, why: Option<String> },
    /// Dead credentials.
    Expired { token: String },
    /// Answers with canned media.
    Flagged { token: String },
    /// The account's plan (`basic`, `supergrok`, `heavy`), as the upstream told it.
    Plan { token: String, plan: String },
}

impl TokenEvent {
    pub fn token(&self) -> &str {
        match self {
            Self::Product { token, .. }
            | Self::Cooling { token, .. }
            | Self::Expired { token }
            | Self::Flagged { token }
            | Self::Plan { token, .. } => token,
        }
    }
}

/// Where tokens made in the console are kept for every replica (the shared store): what one replica
/// adds, changes or removes there, the others apply at once, and replicas that start later read.
pub trait TokenBook: Send + Sync {
    /// Keeps these tokens as they are now (value, proxy, note, switch) and tells the other replicas.
    fn put(&self, tokens: Vec<ExportedToken>) -> futures_util::future::BoxFuture<'static, Result<(), String>>;
    /// Forgets tokens (by id) and tells the other replicas to take them out.
    fn remove(&self, ids: Vec<String>) -> futures_util::future::BoxFuture<'static, Result<(), String>>;
}

//! What replicas tell each other through the shared store.

use std::collections::HashMap;

use crate::upstream::tokens::TokenEvent;

/// Each replica's requests in flight per token, as one replica tells the others.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct InFlight {
    pub replica: String,
    pub counts: std::collections::HashMap<String, u32>,
}

/// A token change on the wire: who saw it, and what.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct TokenNews {
    pub replica: String,
    pub event: crate::upstream::tokens::TokenEvent,
}

/// Console-made tokens one replica put into the book or took out, for the others.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct BookNews {
    pub replica: String,
    #[serde(default)]
    pub put: Vec<crate::upstream::tokens::ExportedToken>,
    #[serde(default)]
    pub removed: Vec<String>,
}

/// What other replicas say, as one replica hears it (its own words are not among them).
#[derive(Debug)]
pub enum News {
    /// Cancel this task if this replica runs it, saying why.
    Cancel { id: String, why: String },
    /// Another replica claimed this task: a queued copy here is dropped.
    Claimed(String),
    /// A console key changed (rotated, revoked): a cached copy is dropped.
    KeyChanged(String),
    /// Another replica's requests in flight per token.
    InFlight { replica: String, counts: HashMap<String, u32> },
    /// A token change another replica saw.
    Token(TokenEvent),
    /// Console-made tokens another replica added, changed or removed.
    Book { put: Vec<crate::upstream::tokens::ExportedToken>, removed: Vec<String> },
}

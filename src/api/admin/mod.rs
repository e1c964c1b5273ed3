//! The JSON admin API behind `admin.api_key` (bearer) or a console session: the token pool, API keys,
//! usage, every owner's tasks, and the overview. The console page is a client of exactly this API.

pub mod keys;
pub mod overview;
pub mod session;
pub mod tasks;
pub mod tokens;
pub mod usage;

pub use tokens::TokenList;

//! Tracking: the signed tokens behind every link, and (later) the events they record.

mod token;

pub use token::{Claims, MAX_TOKEN_LEN, Purpose, Signer, TokenError};

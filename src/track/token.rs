//! Purpose-bound signed tokens carried by every link rapport sends.
//!
//! A token is `base64url(payload || mac)`, where the payload says what the token is for
//! (`Purpose`), whom it is about (an id), an optional expiry and an optional nonce, and the
//! MAC is the first 16 bytes of HMAC-SHA256 over the payload with the installation's secret.
//! A token of one purpose never verifies as another, and any change to it fails the MAC.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(super) type HmacSha256 = Hmac<Sha256>;

const MAC_LEN: usize = 16;
const VERSION: u8 = 1;
/// Tokens longer than this are rejected before any decoding work.
pub const MAX_TOKEN_LEN: usize = 256;

/// What a link may do. Each purpose is its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Confirm,
    Profile,
    Unsubscribe,
    Click,
    Open,
    Feedback,
}

impl Purpose {
    fn code(self) -> u8 {
        match self {
            Purpose::Confirm => b'c',
            Purpose::Profile => b'p',
            Purpose::Unsubscribe => b'u',
            Purpose::Click => b'k',
            Purpose::Open => b'o',
            Purpose::Feedback => b'f',
        }
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub id: i64,
    pub expires_at: Option<i64>,
    pub nonce: String,
}

/// Why a token was refused. Callers answer all of these with the same 404 page; the
/// variants exist for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token signature does not match")]
    BadSignature,
    #[error("token is for another purpose")]
    WrongPurpose,
    #[error("token has expired")]
    Expired,
}

/// Signs and verifies tokens with the installation secret.
#[derive(Clone)]
pub struct Signer {
    /// HMAC-SHA256 already keyed: each token clones it instead of hashing the key into the
    /// inner and outer pads again (two of the four SHA-256 blocks a short token costs).
    keyed: HmacSha256,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer keyed with `secret` (at least 16 bytes are expected; the store generates 32).
    pub fn new(secret: &[u8]) -> Signer {
        Signer {
            keyed: HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length"),
        }
    }

    pub(super) fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }

    /// A token for `purpose` about `id`, valid until `expires_at` (unix seconds) if given,
    /// carrying `nonce` (short ASCII, may be empty).
    pub fn sign(&self, purpose: Purpose, id: i64, expires_at: Option<i64>, nonce: &str) -> String {
        let mut payload = vec![VERSION, purpose.code()];
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&expires_at.unwrap_or(0).to_be_bytes());
        payload.extend_from_slice(nonce.as_bytes());
        let mut mac = self.mac();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        payload.extend_from_slice(&tag[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// Checks a token for `purpose` at time `now` (unix seconds).
    pub fn verify(&self, purpose: Purpose, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        if bytes.len() < 2 + 8 + 8 + MAC_LEN || bytes[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let (payload, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        let mut mac = self.mac();
        mac.update(payload);
        mac.verify_truncated_left(tag)
            .map_err(|_| TokenError::BadSignature)?;
        if payload[1] != purpose.code() {
            return Err(TokenError::WrongPurpose);
        }
        let id = i64::from_be_bytes(
            payload[2..10]
                .try_into()
                .map_err(|_| TokenError::Malformed)?,
        );
        let exp = i64::from_be_bytes(
            payload[10..18]
                .try_into()
                .map_err(|_| TokenError::Malformed)?,
        );
        let nonce = std::str::from_utf8(&payload[18..]).map_err(|_| TokenError::Malformed)?;
        let expires_at = (exp != 0).then_some(exp);
        if expires_at.is_some_and(|e| now > e) {
            return Err(TokenError::Expired);
        }
        Ok(Claims {
            id,
            expires_at,
            nonce: nonce.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        let t = s.sign(Purpose::Confirm, 42, Some(1000), "n0nce");
        let c = s.verify(Purpose::Confirm, &t, 999).unwrap();
        assert_eq!(
            c,
            Claims {
                id: 42,
                expires_at: Some(1000),
                nonce: "n0nce".into()
            }
        );
        let t = s.sign(Purpose::Profile, 7, None, "");
        assert_eq!(s.verify(Purpose::Profile, &t, i64::MAX).unwrap().id, 7);
    }

    #[test]
    fn refuses_tampering_purpose_expiry_and_foreign_keys() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        let t = s.sign(Purpose::Confirm, 42, Some(1000), "");
        assert_eq!(
            s.verify(Purpose::Profile, &t, 0),
            Err(TokenError::WrongPurpose)
        );
        assert_eq!(
            s.verify(Purpose::Confirm, &t, 1001),
            Err(TokenError::Expired)
        );
        let other = Signer::new(b"another secret of thirty-two b..");
        assert_eq!(
            other.verify(Purpose::Confirm, &t, 0),
            Err(TokenError::BadSignature)
        );
        // Flip one bit in every position: never accepted.
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            let bad = URL_SAFE_NO_PAD.encode(&raw);
            assert!(
                s.verify(Purpose::Confirm, &bad, 0).is_err(),
                "bit flip at {i} accepted"
            );
            raw[i] ^= 1;
        }
        for junk in ["", "x", "!!!!", &"A".repeat(300)] {
            assert_eq!(
                s.verify(Purpose::Confirm, junk, 0),
                Err(TokenError::Malformed)
            );
        }
    }
}

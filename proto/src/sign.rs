//! Request signing: HMAC-SHA256 over method, path, timestamp, nonce and the body's hash.
//!
//! The client sends four headers; the server recomputes the signature with the key it holds for
//! `X-Auto-Key`, compares in constant time, checks the timestamp window (both directions) and
//! refuses a nonce it has seen.
//!
//! ```text
//! canonical = METHOD "\n" PATH_AND_QUERY "\n" TIMESTAMP "\n" NONCE "\n" hex(sha256(body))
//! signature = hex(hmac_sha256(secret, canonical))
//! ```

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The key's name (the agent), as `auto-server keys create NAME` made it.
pub const HEADER_KEY: &str = "x-auto-key";
/// Unix seconds.
pub const HEADER_TIMESTAMP: &str = "x-auto-timestamp";
/// At least 16 random bytes, hex; never reused.
pub const HEADER_NONCE: &str = "x-auto-nonce";
/// Lower-case hex HMAC-SHA256.
pub const HEADER_SIGNATURE: &str = "x-auto-signature";

/// The text that is signed.
pub fn canonical(method: &str, path: &str, timestamp: i64, nonce: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!(
        "{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path,
        timestamp,
        nonce,
        body_hash
    )
}

/// The signature of a request, lower-case hex.
pub fn signature(
    secret: &[u8],
    method: &str,
    path: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(canonical(method, path, timestamp, nonce, body).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a signature in constant time. A signature that is not hex is simply wrong.
pub fn verify(
    secret: &[u8],
    method: &str,
    path: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
    given_hex: &str,
) -> bool {
    let Ok(given) = hex::decode(given_hex) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(canonical(method, path, timestamp, nonce, body).as_bytes());
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let s = signature(b"k", "POST", "/api/v1/reports", 1_700_000_000, "ab", b"{}");
        assert!(verify(
            b"k",
            "POST",
            "/api/v1/reports",
            1_700_000_000,
            "ab",
            b"{}",
            &s
        ));
        assert!(!verify(
            b"x",
            "POST",
            "/api/v1/reports",
            1_700_000_000,
            "ab",
            b"{}",
            &s
        ));
        assert!(!verify(
            b"k",
            "POST",
            "/api/v1/reports",
            1_700_000_001,
            "ab",
            b"{}",
            &s
        ));
        assert!(!verify(
            b"k",
            "POST",
            "/api/v1/reports",
            1_700_000_000,
            "ac",
            b"{}",
            &s
        ));
        assert!(!verify(
            b"k",
            "POST",
            "/api/v1/reports",
            1_700_000_000,
            "ab",
            b"{ }",
            &s
        ));
        assert!(!verify(
            b"k",
            "GET",
            "/api/v1/reports",
            1_700_000_000,
            "ab",
            b"{}",
            &s
        ));
        assert!(!verify(
            b"k",
            "POST",
            "/api/v1/reports",
            1_700_000_000,
            "ab",
            b"{}",
            "zz"
        ));
    }

    #[test]
    fn the_canonical_text_is_stable() {
        // Pinned: the server and older clients rely on this exact text.
        assert_eq!(
            canonical("post", "/api/v1/reports", 1, "n", b""),
            "POST\n/api/v1/reports\n1\nn\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

//! The `X-Hub-Signature` header Bitbucket Data Center sends when a webhook has a secret:
//! `sha256=<lower-case hex HMAC-SHA256 of the raw body, keyed with the secret>`.
//!
//! The signature is checked over the exact bytes received, before any parsing, and compared in
//! constant time (`hmac`'s `verify_slice` uses `subtle`). Only `sha256` is accepted: Bitbucket
//! Data Center has always used it, and accepting weaker algorithms would invite downgrades.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature header is missing")]
    Missing,
    #[error("the X-Hub-Signature header must be sha256=<64 hex digits>")]
    Malformed,
    #[error("the X-Hub-Signature algorithm {0:?} is not accepted; only sha256 is")]
    UnsupportedAlgorithm(String),
    #[error("the X-Hub-Signature does not match the body and the configured webhook secret")]
    Mismatch,
}

/// A parsed `sha256=<hex>` signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature([u8; 32]);

impl Signature {
    /// Parses the header value. Hex digits may be upper- or lower-case.
    pub fn parse(header: &str) -> Result<Self, SignatureError> {
        let (algorithm, digest) = header.trim().split_once('=').ok_or(SignatureError::Malformed)?;
        if !algorithm.eq_ignore_ascii_case("sha256") {
            return Err(SignatureError::UnsupportedAlgorithm(
                algorithm.chars().take(16).collect(),
            ));
        }
        decode_digest(digest.as_bytes())
            .map(Self)
            .ok_or(SignatureError::Malformed)
    }

    /// Whether this signature was made over `body` with any of `secrets`. Every secret is tried
    /// (no early exit on the first match), so timing does not tell which one matched.
    pub fn verify<'a>(
        &self,
        body: &[u8],
        secrets: impl IntoIterator<Item = &'a SecretString>,
    ) -> Result<(), SignatureError> {
        self.verify_keyed(body, &WebhookKeys::new(secrets))
    }

    /// [`Signature::verify`] with the secrets already keyed (see [`WebhookKeys`]): the same
    /// answer, without hashing the keys again for every delivery.
    pub fn verify_keyed(&self, body: &[u8], keys: &WebhookKeys) -> Result<(), SignatureError> {
        let mut matched = false;
        for key in &keys.0 {
            let mut mac = key.clone();
            mac.update(body);
            matched |= mac.verify_slice(&self.0).is_ok();
        }
        if matched { Ok(()) } else { Err(SignatureError::Mismatch) }
    }
}

/// The 32 bytes written as `hex` (64 hex digits, either case), decoded in one fixed-size loop
/// without an early exit; `None` for any other text. (What `hex::decode_to_slice` accepts, at a
/// fraction of its cost on the webhook's per-delivery path.)
fn decode_digest(hex: &[u8]) -> Option<[u8; 32]> {
    let hex: &[u8; 64] = hex.try_into().ok()?;
    let nibble = |c: u8| {
        let digit = c.wrapping_sub(b'0');
        let letter = (c | 0x20).wrapping_sub(b'a');
        let value = if digit < 10 { digit } else { letter.wrapping_add(10) };
        (value, digit < 10 || letter < 6)
    };
    let mut bytes = [0u8; 32];
    let mut valid = true;
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        let (high, high_ok) = nibble(pair[0]);
        let (low, low_ok) = nibble(pair[1]);
        valid &= high_ok & low_ok;
        *byte = high << 4 | (low & 0xf);
    }
    valid.then_some(bytes)
}

/// Webhook secrets as HMAC-SHA256 states already keyed (the inner and outer pads hashed), built
/// once per secret read: a delivery clones one and hashes only its body. The comparison stays
/// `hmac`'s constant-time `verify_slice`. `Debug` shows how many keys, never what they are.
#[derive(Clone, Default)]
pub struct WebhookKeys(Vec<HmacSha256>);

impl WebhookKeys {
    /// The keyed states of `secrets`, in order.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a SecretString>) -> Self {
        Self(secrets.into_iter().map(mac_for).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for WebhookKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookKeys({} keyed)", self.0.len())
    }
}

fn mac_for(secret: &SecretString) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// The header value Bitbucket Data Center would send for `body` signed with `secret`.
pub fn sign(body: &[u8], secret: &SecretString) -> String {
    let mut mac = mac_for(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn a_known_vector_matches() {
        // RFC 4231 test case 2.
        let header = sign(b"what do ya want for nothing?", &secret("Jefe"));
        assert_eq!(
            header,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_signature_covers_the_exact_bytes() {
        let s = secret("s3cret");
        let sig = Signature::parse(&sign(b"{\"a\":1}", &s)).unwrap();
        assert!(sig.verify(b"{\"a\":1}", [&s]).is_ok());
        assert_eq!(sig.verify(b"{\"a\":1}\n", [&s]), Err(SignatureError::Mismatch));
        assert_eq!(sig.verify(b"{\"a\": 1}", [&s]), Err(SignatureError::Mismatch));
    }

    #[test]
    fn previous_secrets_are_accepted_during_rotation() {
        let (new, old) = (secret("new"), secret("old"));
        let sig = Signature::parse(&sign(b"body", &old)).unwrap();
        assert!(sig.verify(b"body", [&new, &old]).is_ok());
        assert!(sig.verify(b"body", [&new]).is_err());
    }

    #[test]
    fn other_algorithms_and_shapes_are_refused() {
        assert!(matches!(
            Signature::parse("sha1=0123"),
            Err(SignatureError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            Signature::parse("md5=00"),
            Err(SignatureError::UnsupportedAlgorithm(_))
        ));
        assert_eq!(Signature::parse("sha256="), Err(SignatureError::Malformed));
        assert_eq!(
            Signature::parse(&format!("sha256={}", "z".repeat(64))),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            Signature::parse(&format!("sha256={}", "a".repeat(63))),
            Err(SignatureError::Malformed)
        );
        assert_eq!(Signature::parse("deadbeef"), Err(SignatureError::Malformed));
    }

    #[test]
    fn keyed_states_verify_as_the_secrets_do_and_do_not_print_them() {
        let (new, old) = (secret("new-secret"), secret("old-secret"));
        let keys = WebhookKeys::new([&new, &old]);
        let by_old = Signature::parse(&sign(b"body", &old)).unwrap();
        let by_other = Signature::parse(&sign(b"body", &secret("other"))).unwrap();

        assert!(by_old.verify_keyed(b"body", &keys).is_ok());
        assert_eq!(by_other.verify_keyed(b"body", &keys), Err(SignatureError::Mismatch));
        assert_eq!(
            by_old.verify_keyed(b"body", &WebhookKeys::default()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(format!("{keys:?}"), "WebhookKeys(2 keyed)");
    }

    #[test]
    fn upper_case_hex_is_accepted() {
        let s = secret("k");
        let header = sign(b"x", &s).to_uppercase().replacen("SHA256", "sha256", 1);
        assert!(Signature::parse(&header).unwrap().verify(b"x", [&s]).is_ok());
    }

    proptest! {
        #[test]
        fn any_body_verifies_with_its_own_signature(body in proptest::collection::vec(any::<u8>(), 0..2048), key in "[ -~]{1,64}") {
            let s = secret(&key);
            let sig = Signature::parse(&sign(&body, &s)).unwrap();
            prop_assert!(sig.verify(&body, [&s]).is_ok());
        }

        #[test]
        fn any_change_to_the_body_is_detected(mut body in proptest::collection::vec(any::<u8>(), 1..512), idx in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let s = secret("key");
            let sig = Signature::parse(&sign(&body, &s)).unwrap();
            let i = idx.index(body.len());
            body[i] ^= flip;
            prop_assert_eq!(sig.verify(&body, [&s]), Err(SignatureError::Mismatch));
        }

        #[test]
        fn digests_are_decoded_as_the_hex_crate_decodes_them(
            digest in prop_oneof![3 => "[0-9a-fA-F]{64}", 1 => "[0-9a-fA-F]{63,65}"],
            bad in prop::option::of((any::<prop::sample::Index>(), prop::sample::select(vec!['g', 'G', '/', ':', '@', '`', '\0', '\u{e9}']))),
        ) {
            let mut digest: Vec<char> = digest.chars().collect();
            if let Some((at, c)) = bad {
                let at = at.index(digest.len());
                digest[at] = c;
            }
            let digest: String = digest.into_iter().collect();
            let mut expected = [0u8; 32];
            let expected = hex::decode_to_slice(&digest, &mut expected).ok().map(|()| expected);

            prop_assert_eq!(decode_digest(digest.as_bytes()), expected);
        }

        #[test]
        fn garbage_headers_never_panic(header in ".{0,200}") {
            let _ = Signature::parse(&header);
        }
    }
}

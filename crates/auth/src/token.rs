//! Token verification into a [`Principal`].

use crate::claims::{AUDIENCE, Claims, now_secs};
use crate::keys::TrustedKey;
use crate::{Error, Result};
use citybrain_types::{Role, validate_dept_code};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use std::collections::HashMap;
use std::sync::Mutex;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 30;

/// Most verified tokens remembered; the memory is emptied when it is full.
const REMEMBERED_TOKENS: usize = 10_000;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who is calling.
    pub subject: String,
    /// The caller's department code.
    pub department: String,
    /// What the caller may do.
    pub role: Role,
    /// Who issued the token.
    pub issuer: String,
    /// Token expiry, seconds since the epoch.
    pub expires_at: u64,
}

/// Verifies bearer tokens against a fixed set of trusted keys.
///
/// A client sends the same token on every call until it expires, and checking its signature is
/// most of the cost of a small call. So a token that verified is remembered, byte for byte, with
/// its principal; a later call with the same bytes skips the signature and claims decoding, and
/// only its expiry is checked again. Anything else (another token, one byte changed) is verified
/// in full. The trusted keys never change while an authenticator lives.
pub struct Authenticator {
    keys: HashMap<String, TrustedKey>,
    verified: Mutex<HashMap<Box<str>, Principal>>,
}

impl Authenticator {
    /// An authenticator trusting exactly these keys.
    pub fn new(keys: impl IntoIterator<Item = TrustedKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|k| (k.kid.clone(), k)).collect(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies the value of an `authorization` header (`Bearer <jwt>`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal> {
        let header = header.ok_or(Error::MissingToken)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(Error::Malformed("expected 'Bearer <token>'"))?;
        self.verify(token.trim())
    }

    /// Verifies a compact JWT.
    pub fn verify(&self, token: &str) -> Result<Principal> {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = verified.get(token) {
            if p.expires_at + LEEWAY_SECS < now_secs() {
                verified.remove(token);
                return Err(Error::Expired);
            }
            return Ok(p.clone());
        }
        drop(verified);
        let p = self.verify_signed(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= REMEMBERED_TOKENS {
            verified.clear();
        }
        verified.insert(token.into(), p.clone());
        Ok(p)
    }

    /// Checks a token's signature and claims.
    fn verify_signed(&self, token: &str) -> Result<Principal> {
        let header = decode_header(token).map_err(|_| Error::Malformed("not a JWT"))?;
        let kid = header
            .kid
            .as_deref()
            .ok_or(Error::Malformed("no key id (kid)"))?;
        let key = self.keys.get(kid).ok_or(Error::UnknownKey)?;
        if header.alg != key.algorithm {
            return Err(Error::WrongAlgorithm);
        }
        let mut v = Validation::new(key.algorithm);
        v.set_audience(&[AUDIENCE]);
        v.set_issuer(&[key.issuer.as_str()]);
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        v.validate_exp = true;
        v.validate_nbf = true;
        v.leeway = LEEWAY_SECS;
        let data = decode::<Claims>(token, &key.key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => Error::Expired,
            ErrorKind::ImmatureSignature => Error::NotYetValid,
            ErrorKind::InvalidAudience => Error::WrongAudience,
            ErrorKind::InvalidIssuer => Error::WrongIssuer,
            ErrorKind::InvalidSignature => Error::BadSignature,
            ErrorKind::MissingRequiredClaim(c) => Error::MissingClaim(c.clone()),
            _ => Error::Malformed("claims do not decode"),
        })?;
        let c = data.claims;
        // Belt and braces: the library checked these, but a wrong check here would be a bypass.
        let now = now_secs();
        if c.exp + LEEWAY_SECS < now {
            return Err(Error::Expired);
        }
        if c.nbf > now + LEEWAY_SECS {
            return Err(Error::NotYetValid);
        }
        if c.sub.is_empty() {
            return Err(Error::MissingClaim("sub".into()));
        }
        let role = c
            .role
            .parse::<Role>()
            .map_err(|_| Error::Malformed("unknown role claim"))?;
        validate_dept_code(&c.dept).map_err(|_| Error::Malformed("bad dept claim"))?;
        Ok(Principal {
            subject: c.sub,
            department: c.dept,
            role,
            issuer: c.iss,
            expires_at: c.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalIssuer;

    fn setup() -> (tempfile::TempDir, LocalIssuer, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let issuer = LocalIssuer::load_or_create(dir.path()).unwrap();
        let auth = Authenticator::new([issuer.trusted_key()]);
        (dir, issuer, auth)
    }

    fn claims(issuer: &LocalIssuer) -> Claims {
        let _ = issuer;
        let now = now_secs();
        Claims {
            iss: crate::keys::LOCAL_ISSUER.into(),
            sub: "alice".into(),
            aud: AUDIENCE.into(),
            exp: now + 600,
            nbf: now,
            iat: now,
            dept: "hrss".into(),
            role: "consumer".into(),
        }
    }

    #[test]
    fn minted_token_verifies() {
        let (_d, issuer, auth) = setup();
        let t = issuer.mint("hrss", Role::Steward, "bob", 60).unwrap();
        let p = auth.verify_header(Some(&format!("Bearer {t}"))).unwrap();
        assert_eq!(p.department, "hrss");
        assert_eq!(p.role, Role::Steward);
        assert_eq!(p.subject, "bob");
    }

    #[test]
    fn a_remembered_token_is_only_the_same_bytes_and_still_expires() {
        let (_d, issuer, auth) = setup();
        let t = issuer.mint("hrss", Role::Consumer, "a", 60).unwrap();
        let p = auth.verify(&t).unwrap();
        assert_eq!(auth.verify(&t).unwrap(), p, "remembered");
        // One signature byte changed: verified in full, and refused.
        let mut forged = t.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(matches!(auth.verify(&forged), Err(Error::BadSignature)));
        // The remembered principal's expiry passes: refused, and forgotten.
        let past = now_secs() - LEEWAY_SECS - 1;
        auth.verified
            .lock()
            .unwrap()
            .get_mut(t.as_str())
            .unwrap()
            .expires_at = past;
        assert!(matches!(auth.verify(&t), Err(Error::Expired)));
        assert!(!auth.verified.lock().unwrap().contains_key(t.as_str()));
    }

    #[test]
    fn key_survives_restart() {
        let (dir, issuer, _) = setup();
        let t = issuer.mint("hrss", Role::Consumer, "a", 60).unwrap();
        let again = LocalIssuer::load_or_create(dir.path()).unwrap();
        assert_eq!(again.kid(), issuer.kid());
        assert!(Authenticator::new([again.trusted_key()]).verify(&t).is_ok());
    }

    #[test]
    fn every_bad_token_is_refused() {
        let (_d, issuer, auth) = setup();
        let mut c = claims(&issuer);
        c.exp = now_secs() - 3600;
        assert!(matches!(
            auth.verify(&issuer.sign(&c).unwrap()),
            Err(Error::Expired)
        ));
        let mut c = claims(&issuer);
        c.nbf = now_secs() + 3600;
        assert!(matches!(
            auth.verify(&issuer.sign(&c).unwrap()),
            Err(Error::NotYetValid)
        ));
        let mut c = claims(&issuer);
        c.aud = "elsewhere".into();
        assert!(matches!(
            auth.verify(&issuer.sign(&c).unwrap()),
            Err(Error::WrongAudience)
        ));
        let mut c = claims(&issuer);
        c.iss = "someone".into();
        assert!(matches!(
            auth.verify(&issuer.sign(&c).unwrap()),
            Err(Error::WrongIssuer)
        ));
        let mut c = claims(&issuer);
        c.role = "root".into();
        assert!(matches!(
            auth.verify(&issuer.sign(&c).unwrap()),
            Err(Error::Malformed(_))
        ));

        // Signed by another hub's key with the same kid: bad signature.
        let other_dir = tempfile::tempdir().unwrap();
        let other = LocalIssuer::load_or_create(other_dir.path()).unwrap();
        let forged = other.sign(&claims(&other)).unwrap();
        assert!(matches!(auth.verify(&forged), Err(Error::UnknownKey)));

        let good = issuer.sign(&claims(&issuer)).unwrap();
        let mut parts: Vec<&str> = good.split('.').collect();
        let other_sig = forged.split('.').nth(2).unwrap().to_owned();
        parts[2] = &other_sig;
        assert!(matches!(
            auth.verify(&parts.join(".")),
            Err(Error::BadSignature)
        ));

        assert!(matches!(auth.verify("abc.def"), Err(Error::Malformed(_))));
        assert!(matches!(auth.verify_header(None), Err(Error::MissingToken)));
        assert!(matches!(
            auth.verify_header(Some("Basic x")),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn hs256_with_public_key_is_refused() {
        // The classic confusion attack: sign HS256 with the public key bytes as the secret.
        let (_d, issuer, auth) = setup();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(issuer.kid().to_owned());
        let t = jsonwebtoken::encode(
            &header,
            &claims(&issuer),
            &jsonwebtoken::EncodingKey::from_secret(b"anything"),
        )
        .unwrap();
        assert!(matches!(auth.verify(&t), Err(Error::WrongAlgorithm)));
    }
}

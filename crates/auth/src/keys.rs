//! Key material: the hub's own Ed25519 signing key and the public keys of trusted issuers.

use crate::claims::{AUDIENCE, Claims, now_secs};
use crate::{Error, Result};
use citybrain_types::Role;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Issuer name of tokens the hub mints with its own key.
pub const LOCAL_ISSUER: &str = "citybrain-hub";
/// File stem of the token signing key (`.pem` private, `.pub.pem` public).
const KEY_NAME: &str = "hub-signing-key";

/// A public key the hub accepts tokens from.
#[derive(Clone)]
pub struct TrustedKey {
    /// Exact key id a token must name in its header.
    pub kid: String,
    /// The `iss` a token signed by this key must carry.
    pub issuer: String,
    /// EdDSA or ES256.
    pub algorithm: Algorithm,
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKey")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl TrustedKey {
    /// A trusted key from a PEM public key (SPKI).
    pub fn from_pem(kid: &str, issuer: &str, algorithm: Algorithm, pem: &[u8]) -> Result<Self> {
        let bad = |e: jsonwebtoken::errors::Error| Error::KeyFile {
            path: format!("key '{kid}'"),
            reason: e.to_string(),
        };
        let key = match algorithm {
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem).map_err(bad)?,
            Algorithm::ES256 => DecodingKey::from_ec_pem(pem).map_err(bad)?,
            _ => {
                return Err(Error::KeyFile {
                    path: format!("key '{kid}'"),
                    reason: "only EdDSA and ES256 keys are accepted".into(),
                });
            }
        };
        Ok(Self {
            kid: kid.to_owned(),
            issuer: issuer.to_owned(),
            algorithm,
            key,
        })
    }
}

/// The file format of `--trusted-issuers`: one `[[issuer]]` table per key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustedFile {
    #[serde(default)]
    issuer: Vec<TrustedEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustedEntry {
    iss: String,
    kid: String,
    alg: String,
    /// Path of a PEM public key, relative to the configuration file.
    public_key_file: PathBuf,
}

/// Reads trusted issuer keys from a TOML file.
pub fn load_trusted_keys(path: &Path) -> Result<Vec<TrustedKey>> {
    let err = |reason: String| Error::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: TrustedFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    file.issuer
        .iter()
        .map(|e| {
            let alg = match e.alg.as_str() {
                "EdDSA" => Algorithm::EdDSA,
                "ES256" => Algorithm::ES256,
                other => {
                    return Err(err(format!(
                        "issuer '{}': unsupported alg '{other}'",
                        e.iss
                    )));
                }
            };
            let pem_path = base.join(&e.public_key_file);
            let pem = std::fs::read(&pem_path).map_err(|x| Error::KeyFile {
                path: pem_path.display().to_string(),
                reason: x.to_string(),
            })?;
            TrustedKey::from_pem(&e.kid, &e.iss, alg, &pem)
        })
        .collect()
}

/// The hub's own signing key, used to mint development and demo tokens.
pub struct LocalIssuer {
    kid: String,
    encoding: EncodingKey,
    trusted: TrustedKey,
}

impl LocalIssuer {
    /// Loads the key pair from `dir`, creating it (mode 0600) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self> {
        let signing = crate::keyfile::ed25519_key(dir, KEY_NAME)?;
        let path = dir.join(format!("{KEY_NAME}.pem"));
        let key_err = |reason: String| Error::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let public_pem = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| key_err(e.to_string()))?;
        let digest = Sha256::digest(signing.verifying_key().as_bytes());
        let kid = format!("hub-{}", crate::keyfile::hex(&digest[..8]));
        let pkcs8 = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| key_err(e.to_string()))?;
        let encoding =
            EncodingKey::from_ed_pem(pkcs8.as_bytes()).map_err(|e| key_err(e.to_string()))?;
        let trusted =
            TrustedKey::from_pem(&kid, LOCAL_ISSUER, Algorithm::EdDSA, public_pem.as_bytes())?;
        Ok(Self {
            kid,
            encoding,
            trusted,
        })
    }

    /// The key id tokens of this issuer carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, for the hub's [`crate::Authenticator`].
    pub fn trusted_key(&self) -> TrustedKey {
        self.trusted.clone()
    }

    /// Mints a token for a department and role, valid from now for `ttl_secs`.
    pub fn mint(&self, dept: &str, role: Role, subject: &str, ttl_secs: u64) -> Result<String> {
        let now = now_secs();
        self.sign(&Claims {
            iss: LOCAL_ISSUER.to_owned(),
            sub: subject.to_owned(),
            aud: AUDIENCE.to_owned(),
            exp: now + ttl_secs,
            nbf: now,
            iat: now,
            dept: dept.to_owned(),
            role: role.as_str().to_owned(),
        })
    }

    /// Signs arbitrary claims with the hub key (tests use it to craft expired or odd tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| Error::Signing(e.to_string()))
    }
}

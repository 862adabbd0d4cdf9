//! Tokens from a configured ES256 issuer are accepted by exact key id; nothing else is.

use citybrain_auth::{AUDIENCE, Authenticator, Claims, Error, load_trusted_keys};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use std::time::{SystemTime, UNIX_EPOCH};

fn claims(iss: &str) -> Claims {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Claims {
        iss: iss.into(),
        sub: "officer-7".into(),
        aud: AUDIENCE.into(),
        exp: now + 300,
        nbf: now,
        iat: now,
        dept: "market-regulation".into(),
        role: "steward".into(),
    }
}

#[test]
fn es256_issuer_from_configuration() {
    let dir = tempfile::tempdir().unwrap();
    // A fixed, valid P-256 scalar: the test needs a key, not randomness.
    let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
    let private_pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
    let public_pem = secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    std::fs::write(dir.path().join("idp.pub.pem"), public_pem).unwrap();
    let config = dir.path().join("issuers.toml");
    std::fs::write(
        &config,
        "[[issuer]]\niss = \"https://idp.example.gov\"\nkid = \"idp-2026\"\nalg = \"ES256\"\npublic_key_file = \"idp.pub.pem\"\n",
    )
    .unwrap();
    let auth = Authenticator::new(load_trusted_keys(&config).unwrap());
    let key = EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap();
    let sign = |kid: &str, alg: Algorithm, iss: &str| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims(iss), &key)
    };

    let p = auth
        .verify(&sign("idp-2026", Algorithm::ES256, "https://idp.example.gov").unwrap())
        .unwrap();
    assert_eq!(p.department, "market-regulation");
    assert_eq!(p.issuer, "https://idp.example.gov");

    let unknown = sign("idp-2025", Algorithm::ES256, "https://idp.example.gov").unwrap();
    assert!(matches!(auth.verify(&unknown), Err(Error::UnknownKey)));
    let wrong_iss = sign("idp-2026", Algorithm::ES256, "https://other.example.gov").unwrap();
    assert!(matches!(auth.verify(&wrong_iss), Err(Error::WrongIssuer)));

    // Unsupported algorithms and typos in the file are configuration errors.
    std::fs::write(&config, "[[issuer]]\niss = \"a\"\nkid = \"b\"\nalg = \"HS256\"\npublic_key_file = \"idp.pub.pem\"\n").unwrap();
    assert!(load_trusted_keys(&config).is_err());
    std::fs::write(&config, "[[issuer]]\niss = \"a\"\nkid = \"b\"\nalgo = \"ES256\"\npublic_key_file = \"idp.pub.pem\"\n").unwrap();
    assert!(load_trusted_keys(&config).is_err());
}

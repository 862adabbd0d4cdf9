//! Key files in the hub's key directory: created on first use with mode 0600 and fsync'd, then
//! loaded on every start. Shared by token signing and the audit log.

use crate::{Error, Result};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use std::path::Path;

fn key_err(path: &Path, reason: impl ToString) -> Error {
    Error::KeyFile {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The Ed25519 key `<dir>/<name>.pem`, created with its public half `<name>.pub.pem` if missing.
pub fn ed25519_key(dir: &Path, name: &str) -> Result<SigningKey> {
    let private = dir.join(format!("{name}.pem"));
    let key = if private.exists() {
        let pem = std::fs::read_to_string(&private).map_err(|e| key_err(&private, e))?;
        SigningKey::from_pkcs8_pem(&pem).map_err(|e| key_err(&private, e))?
    } else {
        let key = SigningKey::from_bytes(&random::<32>(&private)?);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| key_err(&private, e))?;
        write_private(dir, &private, pem.as_bytes())?;
        key
    };
    let public = dir.join(format!("{name}.pub.pem"));
    if !public.exists() {
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| key_err(&public, e))?;
        std::fs::write(&public, pem.as_bytes()).map_err(|e| key_err(&public, e))?;
    }
    Ok(key)
}

/// A 32-byte secret in `<dir>/<name>.key`, created if missing (for keyed hashes).
pub fn secret(dir: &Path, name: &str) -> Result<[u8; 32]> {
    let path = dir.join(format!("{name}.key"));
    if path.exists() {
        let bytes = std::fs::read(&path).map_err(|e| key_err(&path, e))?;
        return bytes
            .try_into()
            .map_err(|_| key_err(&path, "expected exactly 32 bytes"));
    }
    let bytes = random::<32>(&path)?;
    write_private(dir, &path, &bytes)?;
    Ok(bytes)
}

fn random<const N: usize>(path: &Path) -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| key_err(path, e))?;
    Ok(b)
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| key_err(dir, e))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| key_err(path, e))?;
    f.write_all(bytes).map_err(|e| key_err(path, e))?;
    f.sync_all().map_err(|e| key_err(path, e))
}

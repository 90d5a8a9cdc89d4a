//! The host's bearer token. Requests that change something (uploads,
//! submissions, cancels, deletes) need `Authorization: Bearer <token>`.
//! The token is `WEIR_TOKEN` when `weir serve` is given one, else the one
//! in `<data>/token`, generated on the first start.

use super::ServiceError;
use std::io::Read;
use std::path::Path;

/// A token, compared in constant time.
#[derive(Clone)]
pub struct Token(String);

/// Where the token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOrigin {
    /// `WEIR_TOKEN`.
    Environment,
    /// `<data>/token`, written earlier.
    DataDir,
    /// Generated now into `<data>/token`.
    Generated,
}

impl Token {
    /// `given` (from `WEIR_TOKEN`), else the data dir's token, made if missing.
    pub fn load_or_create(
        data_dir: &Path,
        given: Option<String>,
    ) -> Result<(Token, TokenOrigin), ServiceError> {
        if let Some(token) = given.filter(|t| !t.trim().is_empty()) {
            return Ok((Token(token.trim().to_string()), TokenOrigin::Environment));
        }
        let path = data_dir.join("token");
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => {
                return Ok((Token(text.trim().to_string()), TokenOrigin::DataDir));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ServiceError::io("read the token", &path, e)),
        }
        let mut bytes = [0u8; 24];
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(|e| {
            ServiceError::io("read random bytes for a token from", Path::new("/dev/urandom"), e)
        })?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&path, &token)?;
        Ok((Token(token), TokenOrigin::Generated))
    }

    /// The token's text (printed once when generated).
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Checks an `Authorization` header's value.
    pub fn check(&self, header: Option<&str>) -> Result<(), ServiceError> {
        let Some(header) = header else {
            return Err(ServiceError::Unauthorized(
                "this request needs the host's token: pass --token or set WEIR_TOKEN \
                 (it is in the host's data dir, in the file `token`)"
                    .into(),
            ));
        };
        let given = header.strip_prefix("Bearer ").unwrap_or_default().trim();
        if !same(given.as_bytes(), self.0.as_bytes()) {
            return Err(ServiceError::Unauthorized("the token was refused: it is not the host's".into()));
        }
        Ok(())
    }
}

/// Equal bytes, in a time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> Result<(), ServiceError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ServiceError::io("write the token to", path, e))?;
    file.write_all(text.as_bytes()).map_err(|e| ServiceError::io("write the token to", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_kept_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (token, origin) = Token::load_or_create(dir.path(), None).unwrap();
        assert_eq!(origin, TokenOrigin::Generated);
        assert_eq!(token.reveal().len(), 48);
        let (again, origin) = Token::load_or_create(dir.path(), None).unwrap();
        assert_eq!((again.reveal(), origin), (token.reveal(), TokenOrigin::DataDir));
        assert!(token.check(Some(&format!("Bearer {}", token.reveal()))).is_ok());
        assert!(token.check(None).is_err());
        assert!(token.check(Some("Bearer nope")).is_err());
        assert!(token.check(Some(token.reveal())).is_err(), "the scheme is required");
        let (given, origin) = Token::load_or_create(dir.path(), Some("s3cret".into())).unwrap();
        assert_eq!((given.reveal(), origin), ("s3cret", TokenOrigin::Environment));
    }
}

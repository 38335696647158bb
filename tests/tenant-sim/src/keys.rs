//! Token signing keys: one RSA key per tenant, generated at tenant creation, published in that
//! tenant's JWKS, used for app access tokens and for the user tokens the control API issues.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::SimError;

/// RSA modulus size: 2048 bits, what Entra ID's signing keys use.
const RSA_BITS: usize = 2048;

/// A tenant's signing key pair.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    n: String,
    e: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a key (CPU-heavy: call from a blocking task).
    pub fn generate() -> Result<Self, SimError> {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS)
            .map_err(|e| SimError::Key(format!("generating an RSA key: {e}")))?;
        let der = private
            .to_pkcs1_der()
            .map_err(|e| SimError::Key(format!("encoding the RSA key: {e}")))?;
        let n_bytes = private.n().to_bytes_be();
        let n = URL_SAFE_NO_PAD.encode(&n_bytes);
        let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(&n_bytes)[..20]);
        let decoding =
            DecodingKey::from_rsa_components(&n, &e).map_err(|e| SimError::Key(format!("public key: {e}")))?;
        Ok(Self {
            kid,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding,
            n,
            e,
        })
    }

    /// The key id (`kid`, also used as `x5t`).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Key for verifying tokens this key signed.
    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// Signs claims as an RS256 JWT with `kid` and `x5t` in the header.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, SimError> {
        self.sign_with(claims, true)
    }

    /// Signs `claims`, with or without the `kid`/`x5t` header (a token without them is one no
    /// validator can match to a key: for tests of that refusal).
    pub fn sign_with<T: Serialize>(&self, claims: &T, with_kid: bool) -> Result<String, SimError> {
        let mut header = Header::new(Algorithm::RS256);
        if with_kid {
            header.kid = Some(self.kid.clone());
            header.x5t = Some(self.kid.clone());
        }
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| SimError::Key(format!("signing a token: {e}")))
    }

    /// The JWK of the public key, as published in the JWKS.
    pub fn jwk(&self, issuer: &str) -> Value {
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "x5t": self.kid,
            "n": self.n, "e": self.e, "issuer": issuer,
        })
    }
}

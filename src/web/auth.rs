//! `basic_auth_users`: the `Authorization: Basic` check in front of every route. bcrypt
//! at cost 10 takes about 70 ms, so a success is remembered: keyed by a salted SHA-256 of
//! user, hash and password (the password itself is never stored, and a changed hash is a
//! new key), for a bounded number of entries. Failures are not remembered, so wrong
//! guesses cannot push the right ones out; each costs a bcrypt, one at a time.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use base64::Engine as _;
use ring::digest;
use tokio::sync::Semaphore;

/// Successful credentials remembered; past this the memory starts again.
const CACHE_ENTRIES: usize = 256;

/// The verification cache, shared across configuration reloads (its keys include the
/// hash, so an old password stops working once its hash is gone).
pub(super) struct Verifier {
    salt: [u8; 32],
    remembered: Mutex<HashSet<[u8; 32]>>,
    /// bcrypt runs one at a time, as exporter-toolkit does, so a flood of wrong guesses
    /// takes one core at most.
    bcrypt: Semaphore,
}

impl Verifier {
    pub(super) fn new() -> Verifier {
        let mut salt = [0u8; 32];
        // Without randomness the salt stays zero: the keys are still digests, only
        // predictable ones, which leaks nothing a timing attack could use.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt);
        Verifier {
            salt,
            remembered: Mutex::new(HashSet::new()),
            bcrypt: Semaphore::new(1),
        }
    }

    /// Whether the request's `Authorization` header names a user of `users` with the
    /// right password.
    pub(super) async fn allows(
        &self,
        users: &BTreeMap<String, String>,
        authorization: Option<&[u8]>,
    ) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let known = users.get(&user);
        // An unknown user costs a bcrypt too (against some user's hash), so that timing
        // does not tell which user names exist.
        let Some(hash) = known.or_else(|| users.values().next()) else {
            return false;
        };
        let key = self.key(&user, hash, &password);
        if known.is_some() && self.remembered(&key) {
            return true;
        }
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return false;
        };
        let hash_owned = hash.clone();
        let checked =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash_owned)).await;
        let ok = known.is_some() && matches!(checked, Ok(Ok(true)));
        if ok {
            self.remember(key);
        }
        ok
    }

    fn key(&self, user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&self.salt);
        // Lengths first, so that no two different triples give the same input.
        for part in [user.as_bytes(), hash.as_bytes(), password] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    fn remembered(&self, key: &[u8; 32]) -> bool {
        // Poisoned: nothing is remembered, every check runs bcrypt.
        self.remembered
            .lock()
            .map(|set| set.contains(key))
            .unwrap_or(false)
    }

    fn remember(&self, key: [u8; 32]) {
        if let Ok(mut set) = self.remembered.lock() {
            if set.len() >= CACHE_ENTRIES {
                set.clear();
            }
            set.insert(key);
        }
    }
}

/// `Basic base64(user:password)`; the user is text, the password any bytes.
fn basic_credentials(header: &[u8]) -> Option<(String, Vec<u8>)> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> Vec<u8> {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}").into_bytes()
    }

    #[test]
    fn reads_basic_credentials() {
        assert_eq!(
            basic_credentials(&header("a", "b:c")),
            Some(("a".into(), b"b:c".to_vec()))
        );
        assert_eq!(basic_credentials(b"Bearer x"), None);
        assert_eq!(basic_credentials(b"Basic !!!"), None);
        assert_eq!(basic_credentials(b"Basic"), None);
        assert_eq!(basic_credentials(&[0xff, 0xfe]), None);
    }

    #[tokio::test]
    async fn right_wrong_unknown_and_missing() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let users = BTreeMap::from([("prometheus".to_string(), hash)]);
        let v = Verifier::new();
        assert!(
            v.allows(&users, Some(&header("prometheus", "secret")))
                .await
        );
        // Remembered now; still right.
        assert!(
            v.allows(&users, Some(&header("prometheus", "secret")))
                .await
        );
        assert!(!v.allows(&users, Some(&header("prometheus", "wrong"))).await);
        assert!(!v.allows(&users, Some(&header("other", "secret"))).await);
        assert!(!v.allows(&users, None).await);
        assert!(!v.allows(&BTreeMap::new(), Some(&header("a", "b"))).await);
    }

    #[tokio::test]
    async fn a_changed_hash_forgets_the_old_password() {
        let v = Verifier::new();
        let old = BTreeMap::from([("u".to_string(), bcrypt::hash("old", 4).unwrap())]);
        assert!(v.allows(&old, Some(&header("u", "old"))).await);
        let new = BTreeMap::from([("u".to_string(), bcrypt::hash("new", 4).unwrap())]);
        assert!(!v.allows(&new, Some(&header("u", "old"))).await);
        assert!(v.allows(&new, Some(&header("u", "new"))).await);
    }
}

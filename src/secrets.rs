//! Secrets in the log: envelope encryption with one data key per org, wrapped by a master
//! key, so that a secret field of an event (a gateway token) is sealed before it is
//! appended and only the process that must send it ever opens it.
//!
//! - The master key comes from `FLEETLEDGER_MASTER_KEY` (base64, 32 bytes) or, when that is
//!   unset, from `<data dir>/master.key`, which `serve` creates (mode 0600) on first start
//!   while the store holds no live data key. It never enters the store.
//! - Data keys live in the mutable `data_keys` table (see `store::data_keys`), wrapped with
//!   AES-256-GCM under the master key, the org and key id bound as associated data. An org
//!   gets its key on first need; a race between processes is settled by a unique index.
//! - A secret is sealed with AES-256-GCM under its org's data key (random 96-bit nonce,
//!   org and key id as associated data) into a [`SealedSecret`].
//! - Nothing caches a data key: each seal and open reads its row, so destroying an org's
//!   keys (`orgs forget`) takes effect at once in every process.
//! - Plaintext lives in a [`Plaintext`] (`secrecy`), which cannot be serialised or printed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use chrono::Utc;
use fleetledger_events::secret::SealedSecret;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::StoreSettings;
use crate::store::{DataKey, EventStore, NewDataKey, StoreError};

pub const MASTER_KEY_ENV: &str = "FLEETLEDGER_MASTER_KEY";
pub const MASTER_KEY_FILE: &str = "master.key";
/// Where `secrets rotate-master` puts the new key until its rotation has committed.
const PENDING_SUFFIX: &str = ".new";
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A secret's value in memory: it cannot be serialised or printed by `Debug`; the only way
/// to it is `expose_secret()` at the point of use.
pub type Plaintext = SecretString;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The org's data key was destroyed (`orgs forget`): the secret is gone for good.
    #[error("the secret was destroyed (organization forgotten); set a new one")]
    Destroyed,
    #[error("the secret's data key {kid} is not in this store (a log imported without its keys?); set a new one")]
    UnknownKey { kid: String },
    #[error("the secret belongs to another organization")]
    OtherOrg,
    #[error("the secret cannot be opened: it was altered")]
    Tampered,
    #[error(
        "the store holds data keys but no master key was given: set {MASTER_KEY_ENV} (base64, 32 bytes) \
         or restore {0}"
    )]
    NoMasterKey(PathBuf),
    #[error(
        "the master key ({0}) does not open this store's data keys: set {MASTER_KEY_ENV} to the key they were \
         wrapped with (after `secrets rotate-master`, the new one), or restore the matching master.key"
    )]
    WrongMasterKey(String),
    #[error("{MASTER_KEY_ENV} (or master.key) must be 32 bytes in base64")]
    MalformedMasterKey,
    /// Reading or writing the master key file; the cause says which and why.
    #[error("the master key file")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key that wraps every data key. `Debug` never shows it.
pub struct MasterKey(SecretBox<[u8; KEY_LEN]>);

impl MasterKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        MasterKey(SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| OsRng.fill_bytes(k)))
    }

    pub fn from_base64(text: &str) -> Result<Self, SecretsError> {
        let bytes = Zeroizing::new(B64.decode(text.trim()).map_err(|_| SecretsError::MalformedMasterKey)?);
        if bytes.len() != KEY_LEN {
            return Err(SecretsError::MalformedMasterKey);
        }
        Ok(MasterKey(SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| {
            k.copy_from_slice(&bytes)
        })))
    }

    /// The key as the operator sets it (base64), still wrapped as a secret.
    pub fn to_base64(&self) -> SecretString {
        B64.encode(self.0.expose_secret()).into()
    }

    /// A fingerprint naming the key in `data_keys.master_id`; it reveals nothing of it.
    pub fn id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"fleetledger master key id\0");
        hasher.update(self.0.expose_secret());
        hex::encode(hasher.finalize())[..16].to_string()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.0.expose_secret()).expect("a master key is 32 bytes")
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// What an AES-GCM operation is bound to: its purpose, the org and the key id.
fn aad(purpose: &str, org_id: &str, kid: &str) -> Vec<u8> {
    format!("fleetledger/{purpose}/v1\0{org_id}\0{kid}").into_bytes()
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

/// `nonce ‖ ciphertext` of `plaintext` under `cipher`, bound to `aad`.
fn encrypt(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let nonce = random_nonce();
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
        .expect("AES-GCM encrypts any input of this size");
    (nonce.to_vec(), ciphertext)
}

/// A data key wrapped by the master key: `nonce ‖ ciphertext`.
fn wrap(master: &MasterKey, org_id: &str, kid: &str, data_key: &[u8]) -> Vec<u8> {
    let (mut out, ciphertext) = encrypt(&master.cipher(), data_key, &aad("data-key", org_id, kid));
    out.extend(ciphertext);
    out
}

fn unwrap_with(master: &MasterKey, org_id: &str, kid: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    if wrapped.len() <= NONCE_LEN {
        return Err(SecretsError::WrongMasterKey(format!("data key {kid} is malformed")));
    }
    let (nonce, ciphertext) = wrapped.split_at(NONCE_LEN);
    master
        .cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad("data-key", org_id, kid),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SecretsError::WrongMasterKey(format!("it does not unwrap data key {kid}")))
}

fn data_cipher(data_key: &[u8]) -> Result<Aes256Gcm, SecretsError> {
    Aes256Gcm::new_from_slice(data_key).map_err(|_| SecretsError::Tampered)
}

/// Seals `plaintext` with an org's data key `kid`.
fn seal_with(data_key: &[u8], org_id: &str, kid: &str, plaintext: &Plaintext) -> Result<SealedSecret, SecretsError> {
    let (nonce, ciphertext) = encrypt(
        &data_cipher(data_key)?,
        plaintext.expose_secret().as_bytes(),
        &aad("secret", org_id, kid),
    );
    Ok(SealedSecret {
        kid: kid.to_string(),
        nonce: B64.encode(nonce),
        ciphertext: B64.encode(ciphertext),
    })
}

/// Opens a sealed secret of `org_id` with the data key its `kid` names.
fn open_with(data_key: &[u8], org_id: &str, sealed: &SealedSecret) -> Result<Plaintext, SecretsError> {
    let nonce = B64.decode(&sealed.nonce).map_err(|_| SecretsError::Tampered)?;
    let ciphertext = B64.decode(&sealed.ciphertext).map_err(|_| SecretsError::Tampered)?;
    if nonce.len() != NONCE_LEN {
        return Err(SecretsError::Tampered);
    }
    let plaintext = Zeroizing::new(
        data_cipher(data_key)?
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad("secret", org_id, &sealed.kid),
                },
            )
            .map_err(|_| SecretsError::Tampered)?,
    );
    let text = std::str::from_utf8(&plaintext).map_err(|_| SecretsError::Tampered)?;
    Ok(Plaintext::from(text.to_string()))
}

/// Where this process's master key comes from.
#[derive(Clone, Debug)]
enum Source {
    Env,
    File(PathBuf),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Env => format!("from {MASTER_KEY_ENV}"),
            Source::File(path) => format!("from {}", path.display()),
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            Source::File(path) => Some(path),
            Source::Env => None,
        }
    }
}

/// Reads a key file; `None` when it does not exist.
fn read_key_file(path: &Path) -> Result<Option<MasterKey>, SecretsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(MasterKey::from_base64(text.trim())?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display())).into()),
    }
}

/// Writes `key` to `path` readable by its owner only, fully synced; `create_new` refuses
/// to replace an existing file.
fn write_key_file(path: &Path, key: &MasterKey, create_new: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{}", key.to_base64().expose_secret())?;
    file.sync_all()
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
}

/// `master.key.new` beside `master.key`.
pub fn pending_file(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(PENDING_SUFFIX);
    path.with_file_name(name)
}

/// The master key and the store's data keys: seals and opens secrets.
pub struct Keyring {
    store: Arc<dyn EventStore>,
    source: Source,
    master: RwLock<Option<Arc<MasterKey>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Keyring {
    /// The master key the settings name (the environment, else `<data dir>/master.key`),
    /// checked against the store: when it holds live data keys, the key must open them.
    pub async fn load(settings: &StoreSettings, store: Arc<dyn EventStore>) -> Result<Keyring, SecretsError> {
        let (source, master) = match &settings.master_key {
            Some(value) => (Source::Env, Some(MasterKey::from_base64(value.expose_secret())?)),
            None => {
                let path = settings.data_dir.join(MASTER_KEY_FILE);
                let key = read_key_file(&path)?;
                (Source::File(path), key)
            }
        };
        let keyring = Keyring {
            store,
            source,
            master: RwLock::new(master.map(Arc::new)),
        };
        keyring.check().await?;
        Ok(keyring)
    }

    /// For `serve`: like [`Keyring::load`], and on first start — no master key given, no
    /// `master.key`, no live data key — creates `master.key` (mode 0600). Returns its path
    /// when it did.
    pub async fn load_or_create(settings: &StoreSettings, store: Arc<dyn EventStore>) -> Result<(Keyring, Option<PathBuf>), SecretsError> {
        let path = settings.data_dir.join(MASTER_KEY_FILE);
        let mut created = None;
        if settings.master_key.is_none() && !path.exists() && !store.data_keys().await?.iter().any(|k| k.destroyed_at.is_none()) {
            // Written aside and linked into place: the file never appears half-written, and
            // of two processes starting at once the first link wins and both use it.
            let temp = path.with_file_name(format!(".{MASTER_KEY_FILE}.{}", uuid::Uuid::new_v4().simple()));
            write_key_file(&temp, &MasterKey::generate(), true)?;
            let linked = std::fs::hard_link(&temp, &path);
            let _ = std::fs::remove_file(&temp);
            match linked {
                Ok(()) => {
                    sync_dir(&path);
                    created = Some(path.clone());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok((Keyring::load(settings, store).await?, created))
    }

    /// Whether the master key came from the environment (rather than `master.key`).
    pub fn from_env(&self) -> bool {
        matches!(self.source, Source::Env)
    }

    /// `<data dir>/master.key`, when that is where the master key comes from.
    pub fn key_file(&self) -> Option<&Path> {
        self.source.file()
    }

    /// The current master key. A file-backed keyring reads the file when it has none yet
    /// (`serve` may have created it since).
    fn master(&self) -> Result<Arc<MasterKey>, SecretsError> {
        if let Some(key) = self.master.read().expect("master key lock").clone() {
            return Ok(key);
        }
        match &self.source {
            Source::File(path) => {
                let key = Arc::new(read_key_file(path)?.ok_or_else(|| SecretsError::NoMasterKey(path.clone()))?);
                *self.master.write().expect("master key lock") = Some(key.clone());
                Ok(key)
            }
            Source::Env => Err(SecretsError::NoMasterKey(PathBuf::from(MASTER_KEY_FILE))),
        }
    }

    /// Reads `master.key` again (a rotation may have replaced it); `true` when it now
    /// holds another key. A key from the environment never changes.
    fn reload(&self) -> Result<bool, SecretsError> {
        let Source::File(path) = &self.source else {
            return Ok(false);
        };
        let Some(key) = read_key_file(path)? else {
            return Ok(false);
        };
        let mut current = self.master.write().expect("master key lock");
        if current.as_ref().is_some_and(|c| c.id() == key.id()) {
            return Ok(false);
        }
        *current = Some(Arc::new(key));
        Ok(true)
    }

    /// Refuses a master key that does not open the store's live data keys. A rotation that
    /// committed but crashed before its new `master.key` took the old one's place is
    /// finished here.
    async fn check(&self) -> Result<(), SecretsError> {
        let live: Vec<DataKey> = self
            .store
            .data_keys()
            .await?
            .into_iter()
            .filter(|k| k.destroyed_at.is_none())
            .collect();
        let Some(first) = live.first() else {
            return Ok(());
        };
        let master = match self.master() {
            Ok(master) => master,
            Err(SecretsError::NoMasterKey(_)) => {
                return Err(SecretsError::NoMasterKey(
                    self.source
                        .file()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| PathBuf::from(MASTER_KEY_FILE)),
                ))
            }
            Err(e) => return Err(e),
        };
        let mut master = master;
        if live.iter().any(|k| k.master_id != master.id()) {
            match self.source.file().map(pending_file) {
                Some(pending) if read_key_file(&pending)?.is_some_and(|p| live.iter().all(|k| k.master_id == p.id())) => {
                    let path = self.source.file().expect("a file source");
                    std::fs::rename(&pending, path)?;
                    sync_dir(path);
                    tracing::warn!(path = %path.display(), "finished an interrupted master key rotation");
                    self.reload()?;
                    master = self.master()?;
                }
                _ => return Err(SecretsError::WrongMasterKey(self.source.describe())),
            }
        }
        let wrapped = first.wrapped.as_deref().unwrap_or_default();
        unwrap_with(&master, &first.org_id, &first.kid, wrapped).map_err(|_| SecretsError::WrongMasterKey(self.source.describe()))?;
        Ok(())
    }

    /// A live data key's bytes. A key wrapped by another master (rotated since this
    /// process read its own) sends a file-backed keyring back to `master.key` once.
    fn unwrap(&self, key: &DataKey) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        let wrapped = key.wrapped.as_deref().ok_or(SecretsError::Destroyed)?;
        let mut master = self.master()?;
        if key.master_id != master.id() && self.reload()? {
            master = self.master()?;
        }
        if key.master_id != master.id() {
            return Err(SecretsError::WrongMasterKey(self.source.describe()));
        }
        unwrap_with(&master, &key.org_id, &key.kid, wrapped)
    }

    /// Seals `plaintext` with the org's data key, creating that key on first need.
    pub async fn seal(&self, org_id: &str, plaintext: &Plaintext) -> Result<SealedSecret, SecretsError> {
        let (kid, data_key) = self.live_key(org_id).await?;
        seal_with(&data_key, org_id, &kid, plaintext)
    }

    /// A keyed fingerprint of `message` for an org: HMAC-SHA256 under a key derived from
    /// the org's data key, so the fingerprint of a request that carried a secret (a
    /// gateway token, however short) tells nothing about it to whoever reads the store.
    pub async fn fingerprint(&self, org_id: &str, message: &[u8]) -> Result<String, SecretsError> {
        use hmac::{Hmac, Mac};
        let (_, data_key) = self.live_key(org_id).await?;
        let mut derive = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&data_key).map_err(|_| SecretsError::Tampered)?;
        derive.update(b"fleetledger/fingerprint/v1");
        let subkey = Zeroizing::new(derive.finalize().into_bytes().to_vec());
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&subkey).map_err(|_| SecretsError::Tampered)?;
        mac.update(message);
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    /// The org's live data key and its id, creating the key on first need.
    async fn live_key(&self, org_id: &str) -> Result<(String, Zeroizing<Vec<u8>>), SecretsError> {
        for _ in 0..5 {
            if let Some(key) = self.store.live_data_key(org_id).await? {
                return Ok((key.kid.clone(), self.unwrap(&key)?));
            }
            let master = self.master()?;
            let data_key = Zeroizing::new({
                let mut bytes = vec![0u8; KEY_LEN];
                OsRng.fill_bytes(&mut bytes);
                bytes
            });
            let kid = format!("dk_{}", uuid::Uuid::new_v4().simple());
            let row = DataKey {
                kid: kid.clone(),
                org_id: org_id.to_string(),
                master_id: master.id(),
                wrapped: Some(wrap(&master, org_id, &kid, data_key.as_slice())),
                created_at: Utc::now(),
                destroyed_at: None,
            };
            match self.store.add_data_key(&row).await? {
                NewDataKey::Added => return Ok((kid, data_key)),
                // Another process made the org's key first: use it.
                NewDataKey::Lost => continue,
                NewDataKey::OtherMaster => {
                    if !self.reload()? {
                        return Err(SecretsError::WrongMasterKey(self.source.describe()));
                    }
                }
            }
        }
        Err(StoreError::Corrupt(format!("the data key of org {org_id} kept changing")).into())
    }

    /// Opens a secret of `org_id`, reading its data key from the store now.
    pub async fn open(&self, org_id: &str, sealed: &SealedSecret) -> Result<Plaintext, SecretsError> {
        let key = self
            .store
            .data_key(&sealed.kid)
            .await?
            .ok_or_else(|| SecretsError::UnknownKey { kid: sealed.kid.clone() })?;
        if key.org_id != org_id {
            return Err(SecretsError::OtherOrg);
        }
        if key.destroyed_at.is_some() {
            return Err(SecretsError::Destroyed);
        }
        open_with(&self.unwrap(&key)?, org_id, sealed)
    }

    /// Re-wraps every live data key under `new` in one transaction, then uses it. The log
    /// is not touched. Returns how many keys were re-wrapped.
    pub async fn rewrap_under(&self, new: MasterKey) -> Result<u64, SecretsError> {
        let old = self.master()?;
        let new_id = new.id();
        let rewrap = |key: &DataKey| -> Result<Vec<u8>, String> {
            let wrapped = key.wrapped.as_deref().ok_or("a live key without its wrapped form")?;
            let data_key = unwrap_with(&old, &key.org_id, &key.kid, wrapped).map_err(|e| e.to_string())?;
            Ok(wrap(&new, &key.org_id, &key.kid, data_key.as_slice()))
        };
        let count = self.store.rewrap_data_keys(&new_id, &rewrap).await?;
        *self.master.write().expect("master key lock") = Some(Arc::new(new));
        Ok(count)
    }
}

/// How many live data keys an org has.
pub async fn live_keys_of(store: &dyn EventStore, org_id: &str) -> Result<usize, SecretsError> {
    Ok(store
        .data_keys()
        .await?
        .iter()
        .filter(|k| k.org_id == org_id && k.destroyed_at.is_none())
        .count())
}

/// Destroys every live data key of an org (crypto-shredding): its secrets become
/// unreadable in every process at once. Needs no master key, so a lost master key does not
/// stand in the way of forgetting.
pub async fn forget_org(store: &dyn EventStore, org_id: &str) -> Result<u64, SecretsError> {
    Ok(store.destroy_data_keys(org_id, Utc::now()).await?)
}

/// `secrets rotate-master` for a file-backed key: writes the new key beside `master.key`,
/// re-wraps, then moves it into place, so a crash at any point leaves a key that opens
/// the store (a committed rotation is finished by the next start).
pub async fn rotate_master_file(keyring: &Keyring, path: &Path) -> Result<u64, SecretsError> {
    let new = MasterKey::generate();
    let pending = pending_file(path);
    write_key_file(&pending, &new, false)?;
    match keyring.rewrap_under(new).await {
        Ok(count) => {
            std::fs::rename(&pending, path)?;
            sync_dir(path);
            Ok(count)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&pending);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plaintext(s: &str) -> Plaintext {
        Plaintext::from(s.to_string())
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_org_and_kid() {
        let data_key = [7u8; KEY_LEN];
        let sealed = seal_with(&data_key, "org-a", "dk_1", &plaintext("gw-secret")).unwrap();
        assert_eq!(sealed.kid, "dk_1");
        assert!(!sealed.ciphertext.contains("gw-secret"));
        let opened = open_with(&data_key, "org-a", &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "gw-secret");

        // Another org, another kid, another key, a flipped bit: all refused.
        assert!(matches!(open_with(&data_key, "org-b", &sealed), Err(SecretsError::Tampered)));
        let relabelled = SealedSecret {
            kid: "dk_2".into(),
            ..sealed.clone()
        };
        assert!(matches!(open_with(&data_key, "org-a", &relabelled), Err(SecretsError::Tampered)));
        assert!(matches!(open_with(&[8u8; KEY_LEN], "org-a", &sealed), Err(SecretsError::Tampered)));
        let mut bytes = B64.decode(&sealed.ciphertext).unwrap();
        bytes[0] ^= 1;
        let flipped = SealedSecret {
            ciphertext: B64.encode(bytes),
            ..sealed.clone()
        };
        assert!(matches!(open_with(&data_key, "org-a", &flipped), Err(SecretsError::Tampered)));
        // Every seal has its own nonce.
        let again = seal_with(&data_key, "org-a", "dk_1", &plaintext("gw-secret")).unwrap();
        assert_ne!((again.nonce, again.ciphertext), (sealed.nonce, sealed.ciphertext));
    }

    #[test]
    fn a_wrapped_data_key_opens_only_under_its_master_org_and_kid() {
        let master = MasterKey::generate();
        let wrapped = wrap(&master, "org-a", "dk_1", &[9u8; KEY_LEN]);
        assert_eq!(unwrap_with(&master, "org-a", "dk_1", &wrapped).unwrap().as_slice(), [9u8; KEY_LEN]);
        assert!(unwrap_with(&master, "org-b", "dk_1", &wrapped).is_err());
        assert!(unwrap_with(&master, "org-a", "dk_2", &wrapped).is_err());
        assert!(unwrap_with(&MasterKey::generate(), "org-a", "dk_1", &wrapped).is_err());
    }

    #[test]
    fn master_keys_read_back_and_never_print() {
        let key = MasterKey::generate();
        let text = key.to_base64();
        let back = MasterKey::from_base64(text.expose_secret()).unwrap();
        assert_eq!(back.id(), key.id());
        assert!(!format!("{key:?}").contains(text.expose_secret()));
        assert!(matches!(MasterKey::from_base64("c2hvcnQ="), Err(SecretsError::MalformedMasterKey)));
        assert!(matches!(
            MasterKey::from_base64("not base64!"),
            Err(SecretsError::MalformedMasterKey)
        ));
        assert_eq!(pending_file(Path::new("/d/master.key")), Path::new("/d/master.key.new"));
    }

    async fn sqlite_keyring(dir: &Path, master_key: Option<&MasterKey>) -> Result<Keyring, SecretsError> {
        let settings = StoreSettings {
            data_dir: dir.to_path_buf(),
            database_url: None,
            master_key: master_key.map(|k| k.to_base64()),
            sqlite_synchronous: Default::default(),
        };
        let store = crate::store::connect(&settings.url()).await?;
        Keyring::load(&settings, store).await
    }

    #[tokio::test]
    async fn secrets_seal_open_forget_and_survive_a_master_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let keyring = sqlite_keyring(dir.path(), Some(&master)).await.unwrap();
        let a = keyring.seal("org-a", &plaintext("token-a")).await.unwrap();
        let a2 = keyring.seal("org-a", &plaintext("token-a2")).await.unwrap();
        let b = keyring.seal("org-b", &plaintext("token-b")).await.unwrap();
        assert_eq!(a.kid, a2.kid, "one data key per org");
        assert_ne!(a.kid, b.kid);
        assert_eq!(keyring.open("org-a", &a).await.unwrap().expose_secret(), "token-a");
        assert!(matches!(keyring.open("org-b", &a).await, Err(SecretsError::OtherOrg)));

        // Another master key is refused at once, naming what to set.
        let refused = sqlite_keyring(dir.path(), Some(&MasterKey::generate())).await.unwrap_err();
        assert!(refused.to_string().contains(MASTER_KEY_ENV), "{refused}");

        // Rotation: the old master no longer opens anything, the new one does.
        let new = MasterKey::generate();
        let new_text = new.to_base64();
        assert_eq!(keyring.rewrap_under(new).await.unwrap(), 2);
        assert!(matches!(
            sqlite_keyring(dir.path(), Some(&master)).await,
            Err(SecretsError::WrongMasterKey(_))
        ));
        let rotated = sqlite_keyring(dir.path(), Some(&MasterKey::from_base64(new_text.expose_secret()).unwrap()))
            .await
            .unwrap();
        assert_eq!(rotated.open("org-b", &b).await.unwrap().expose_secret(), "token-b");

        // Forgetting org-a destroys its secrets only; a new secret gets a fresh key.
        assert_eq!(forget_org(rotated.store.as_ref(), "org-a").await.unwrap(), 1);
        assert_eq!(live_keys_of(rotated.store.as_ref(), "org-a").await.unwrap(), 0);
        assert!(matches!(rotated.open("org-a", &a).await, Err(SecretsError::Destroyed)));
        assert_eq!(rotated.open("org-b", &b).await.unwrap().expose_secret(), "token-b");
        let fresh = rotated.seal("org-a", &plaintext("token-a3")).await.unwrap();
        assert_ne!(fresh.kid, a.kid);
        assert_eq!(rotated.open("org-a", &fresh).await.unwrap().expose_secret(), "token-a3");
    }

    #[tokio::test]
    async fn concurrent_first_seals_of_an_org_share_one_data_key() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Arc::new(sqlite_keyring(dir.path(), Some(&MasterKey::generate())).await.unwrap());
        let seals: Vec<_> = (0..8)
            .map(|i| {
                let keyring = keyring.clone();
                tokio::spawn(async move { keyring.seal("org-a", &plaintext(&format!("t{i}"))).await.unwrap() })
            })
            .collect();
        let mut kids = std::collections::HashSet::new();
        for seal in seals {
            kids.insert(seal.await.unwrap().kid);
        }
        assert_eq!(kids.len(), 1, "{kids:?}");
    }
}

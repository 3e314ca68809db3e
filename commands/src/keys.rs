//! The data keys of secret-holding aggregates (webhooks today; parameter sets and ssh keys next).
//!
//! Each aggregate has its own data key, wrapped by the server's master key and kept in the table
//! `data_keys`, outside the append-only log: the events hold only values sealed with the data key,
//! and deleting the aggregate deletes the key row, which leaves every copy of those values — in the
//! log, in read models, in backups of either — unreadable (crypto-shredding).
//!
//! A value is sealed with its aggregate's id and its field (a parameter's name, `secret`, …) as
//! associated data, so a ciphertext copied to another field or aggregate does not open there.
//!
//! The table is not a read model: nothing rebuilds it, so it must be backed up with the log.

use std::sync::Arc;

use monkeyci_crypto::{CryptoError, DataKey, MasterKeys, Sealed, WrappedKey, Zeroizing};
use sqlx::PgPool;
use thiserror::Error;
use uuid::Uuid;

/// Why a secret could not be stored or read.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The server was started without a master key.
    #[error("this server has no master key configured, so it cannot store secrets")]
    NoMasterKey,
    /// The aggregate's data key is gone: the aggregate was deleted.
    #[error("the data key of {0} was destroyed")]
    Destroyed(Uuid),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("reading or writing data keys failed")]
    Database(#[from] sqlx::Error),
    #[error("a stored data key is malformed")]
    Malformed(#[from] serde_json::Error),
}

/// The associated data of a sealed value: the aggregate and the field it belongs to, so a value
/// copied to another field or aggregate does not open.
fn context(owner: Uuid, field: &str) -> Vec<u8> {
    format!("{owner}:{field}").into_bytes()
}

/// Data keys in PostgreSQL, wrapped by the master keys.
#[derive(Clone)]
pub struct KeyStore {
    pool: PgPool,
    master: Arc<MasterKeys>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyStore {{ master key: {} }}", self.master.current_id())
    }
}

impl KeyStore {
    /// Keys in `pool`'s `data_keys`, wrapped with `master`'s current key.
    pub fn new(pool: PgPool, master: MasterKeys) -> Self {
        Self {
            pool,
            master: Arc::new(master),
        }
    }

    /// The data key of `owner`, made and stored (wrapped) if it has none yet. Called before the
    /// first event that holds a value sealed with it is appended; a key whose aggregate was then
    /// never created is harmless.
    pub async fn get_or_create(&self, owner: Uuid) -> Result<DataKey, KeyError> {
        let wrapped = serde_json::to_value(self.master.wrap(&DataKey::generate()?)?)?;
        sqlx::query(
            "INSERT INTO data_keys (owner_id, master_key_id, wrapped) VALUES ($1, $2, $3) \
             ON CONFLICT (owner_id) DO NOTHING",
        )
        .bind(owner)
        .bind(self.master.current_id())
        .bind(wrapped)
        .execute(&self.pool)
        .await?;
        self.get(owner).await
    }

    /// The data key of `owner`; `Destroyed` if there is none.
    pub async fn get(&self, owner: Uuid) -> Result<DataKey, KeyError> {
        let row: Option<(serde_json::Value,)> = sqlx::query_as("SELECT wrapped FROM data_keys WHERE owner_id = $1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?;
        let (wrapped,) = row.ok_or(KeyError::Destroyed(owner))?;
        let wrapped: WrappedKey = serde_json::from_value(wrapped)?;
        Ok(self.master.unwrap(&wrapped)?)
    }

    /// Destroys the data key of `owner`, and with it every value sealed with it.
    pub async fn destroy(&self, owner: Uuid) -> Result<(), KeyError> {
        sqlx::query("DELETE FROM data_keys WHERE owner_id = $1")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Seals `plaintext` as the value of `field` (a parameter's name, `secret`, …) of `owner`.
    pub fn seal(key: &DataKey, owner: Uuid, field: &str, plaintext: &str) -> Result<Sealed, KeyError> {
        Ok(key.seal(plaintext.as_bytes(), &context(owner, field))?)
    }

    /// Opens the value of `field` of `owner` with its data key.
    pub fn open_with(key: &DataKey, owner: Uuid, field: &str, sealed: &Sealed) -> Result<Zeroizing<String>, KeyError> {
        Ok(key.open_str(sealed, &context(owner, field))?)
    }

    /// Opens the value of `field` of `owner`.
    pub async fn open(&self, owner: Uuid, field: &str, sealed: &Sealed) -> Result<Zeroizing<String>, KeyError> {
        Self::open_with(&self.get(owner).await?, owner, field, sealed)
    }

    /// Wraps every data key that is under an older master key with the current one; returns how
    /// many were rewrapped. Afterwards the older keys can be removed from the configuration.
    pub async fn rewrap_all(&self) -> Result<u64, KeyError> {
        let mut rewrapped = 0;
        loop {
            let rows: Vec<(Uuid, serde_json::Value)> = sqlx::query_as(
                "SELECT owner_id, wrapped FROM data_keys WHERE master_key_id <> $1 ORDER BY owner_id LIMIT 500",
            )
            .bind(self.master.current_id())
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Ok(rewrapped);
            }
            let mut tx = self.pool.begin().await?;
            for (owner, wrapped) in rows {
                let wrapped: WrappedKey = serde_json::from_value(wrapped)?;
                let fresh = serde_json::to_value(self.master.rewrap(&wrapped)?)?;
                sqlx::query("UPDATE data_keys SET wrapped = $2, master_key_id = $3 WHERE owner_id = $1")
                    .bind(owner)
                    .bind(fresh)
                    .bind(self.master.current_id())
                    .execute(&mut *tx)
                    .await?;
                rewrapped += 1;
            }
            tx.commit().await?;
        }
    }
}

//! The control service's store (SPEC §4.1): one redb file in the data dir.
//! Every write is one durable transaction that also bumps the policy
//! version, so a snapshot compiled after it reflects it exactly.
//!
//! Secret values and agent tokens are sealed with the [`SealingKey`]
//! (agent tokens must be shown again by the API, so they cannot be only
//! hashed); API keys and gateway tokens are stored as SHA-256 hashes.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use onecli_policy::audit::AuditRecord;
use onecli_policy::credential;
use onecli_policy::model::{
    default_project, AgentDoc, InjectionDoc, PolicyDoc, PolicyMode, RateWindow, RuleAction,
    RuleDoc, SecretDoc, SecretKind, SecretMode, DEFAULT_PROJECT,
};
use onecli_policy::{is_valid_identifier, token_sha256, HostPattern, PathPattern};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError, SealingKey};
use crate::ids;

/// Bump when a table or record changes incompatibly.
/// 2: projects; agents, secrets, rules and API keys belong to one (records
/// written before are the default project's, API keys before are admin keys).
pub const SCHEMA_VERSION: u64 = 2;
const MAX_NAME: usize = 100;
const MAX_SECRET: usize = 64 * 1024;
const ANTHROPIC_OAUTH_PREFIX: &str = "sk-ant-oat";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const PROJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("projects");
const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
const RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("rules");
/// SHA-256 (hex) of an API key or gateway token → its record.
const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
const GATEWAY_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("gateway_tokens");
/// A value sealed with the key when the store was created: a different key
/// is refused at start, not discovered at the first secret.
const KEY_CHECK: TableDefinition<&str, &[u8]> = TableDefinition::new("key_check");
/// Sequence number → audit record (JSON); the oldest go first past the retention.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// (project, sequence number) of every audit record: each project's log
/// read and trimmed without scanning the others'.
const AUDIT_BY_PROJECT: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_by_project");
/// Audit records kept per project: no project's agents can push another
/// project's records out.
pub const AUDIT_RETENTION: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the data directory was written by a newer OneCLI (store schema {found}, this one reads {SCHEMA_VERSION}); upgrade OneCLI or use another --data-dir")]
    NewerSchema { found: u64 },
    #[error("the secret key does not open this data directory: ONECLI_SECRET_KEY or secret.key is not the one it was created with")]
    WrongKey,
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("store error: {0}")]
    Db(String),
    /// The disk under the data directory failed a read or write: the
    /// transaction was not applied.
    #[error("the data directory's disk: {detail}")]
    Disk { fault: DiskFault, detail: String },
}

/// What went wrong with the disk under the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFault {
    /// No space left (or over quota).
    Full,
    ReadOnly,
    /// Another I/O error, or the store waiting to be opened again after one.
    Failed,
}

/// A disk failure, naming where it happened.
fn at_path(path: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Disk { fault, detail } => StoreError::Disk {
            fault,
            detail: format!("{}: {detail}", path.display()),
        },
        other => other,
    }
}

fn db_err<E: Fault>(e: E) -> StoreError {
    match e.disk() {
        Some(fault) => StoreError::Disk {
            fault,
            detail: e.to_string(),
        },
        None => StoreError::Db(e.to_string()),
    }
}

/// Errors that may say what the disk did.
trait Fault: std::fmt::Display {
    fn disk(&self) -> Option<DiskFault> {
        None
    }
}

impl Fault for serde_json::Error {}

impl Fault for std::io::Error {
    fn disk(&self) -> Option<DiskFault> {
        Some(match self.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => DiskFault::Full,
            std::io::ErrorKind::ReadOnlyFilesystem => DiskFault::ReadOnly,
            _ => DiskFault::Failed,
        })
    }
}

impl Fault for redb::StorageError {
    fn disk(&self) -> Option<DiskFault> {
        match self {
            redb::StorageError::Io(e) => e.disk(),
            redb::StorageError::PreviousIo | redb::StorageError::DatabaseClosed => {
                Some(DiskFault::Failed)
            }
            _ => None,
        }
    }
}

impl Fault for redb::Error {
    fn disk(&self) -> Option<DiskFault> {
        match self {
            redb::Error::Io(e) => e.disk(),
            redb::Error::PreviousIo | redb::Error::DatabaseClosed => Some(DiskFault::Failed),
            _ => None,
        }
    }
}

/// redb's per-operation errors, each of which may wrap a storage error.
macro_rules! storage_fault {
    ($($error:ty),*) => {$(
        impl Fault for $error {
            fn disk(&self) -> Option<DiskFault> {
                match self {
                    Self::Storage(e) => e.disk(),
                    _ => None,
                }
            }
        }
    )*};
}
storage_fault!(
    redb::TransactionError,
    redb::CommitError,
    redb::TableError,
    redb::DatabaseError,
    redb::CompactionError
);

/// The redb database, opened again after an I/O failure: redb refuses
/// every operation after one (a full or read-only disk) until the file is
/// reopened, which also rolls it back to its last commit. A failed commit,
/// or a transaction refused for an earlier failure, marks it; the next
/// transaction reopens it first. A reopen that fails is tried again at
/// most once a second.
struct Db {
    path: std::path::PathBuf,
    /// The database, and how many times it was opened.
    current: std::sync::RwLock<(u64, Option<Database>)>,
    failed: std::sync::atomic::AtomicBool,
    last_reopen: std::sync::Mutex<Option<std::time::Instant>>,
}

const REOPEN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

type DbResult<T> = std::result::Result<T, redb::Error>;

impl Db {
    fn open(path: &Path) -> std::result::Result<Db, redb::DatabaseError> {
        Ok(Db {
            path: path.to_owned(),
            current: std::sync::RwLock::new((1, Some(Database::create(path)?))),
            failed: std::sync::atomic::AtomicBool::new(false),
            last_reopen: std::sync::Mutex::new(None),
        })
    }

    fn begin_write(&self) -> DbResult<redb::WriteTransaction> {
        self.begin(Database::begin_write)
    }

    fn begin_read(&self) -> DbResult<redb::ReadTransaction> {
        self.begin(|db| db.begin_read())
    }

    /// Commits `txn`; an I/O failure marks the database to be reopened.
    fn commit(&self, txn: redb::WriteTransaction) -> DbResult<()> {
        txn.commit().map_err(|e| self.noting(e.into()))
    }

    fn compact(&self) -> DbResult<bool> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let db = current.1.as_mut().ok_or(redb::Error::PreviousIo)?;
        db.compact().map_err(|e| self.noting(e.into()))
    }

    fn noting(&self, e: redb::Error) -> redb::Error {
        if e.disk().is_some() {
            self.failed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        e
    }

    fn begin<T>(
        &self,
        begin: impl Fn(&Database) -> std::result::Result<T, redb::TransactionError>,
    ) -> DbResult<T> {
        for attempt in 0..2 {
            if self.failed.load(std::sync::atomic::Ordering::Acquire) {
                let generation = self.current.read().unwrap_or_else(|p| p.into_inner()).0;
                self.reopen(generation)?;
            }
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            let db = current.1.as_ref().ok_or(redb::Error::PreviousIo)?;
            match begin(db).map_err(|e| self.noting(e.into())) {
                // Refused for a failure met inside an earlier transaction:
                // reopen and try once more.
                Err(redb::Error::PreviousIo) if attempt == 0 => continue,
                done => return done,
            }
        }
        Err(redb::Error::PreviousIo)
    }

    /// Drops the failed database and opens the file again (redb repairs it
    /// to its last commit), unless another caller already did, or the last
    /// try was less than a second ago.
    fn reopen(&self, failed_generation: u64) -> DbResult<()> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.0 != failed_generation && current.1.is_some() {
            return Ok(());
        }
        let mut last_failed = self.last_reopen.lock().unwrap_or_else(|p| p.into_inner());
        if last_failed.is_some_and(|at| at.elapsed() < REOPEN_EVERY) {
            return Err(redb::Error::PreviousIo);
        }
        // The file lock goes with the old database: drop it first.
        current.1 = None;
        current.0 += 1;
        match Database::create(&self.path) {
            Ok(db) => {
                current.1 = Some(db);
                *last_failed = None;
                self.failed
                    .store(false, std::sync::atomic::Ordering::Release);
                tracing::warn!(path = %self.path.display(), "the store was opened again after a disk failure");
                Ok(())
            }
            Err(e) => {
                *last_failed = Some(std::time::Instant::now());
                let e = redb::Error::from(e);
                // A transaction still open keeps the file locked: retry later.
                Err(if e.disk().is_some() {
                    e
                } else {
                    redb::Error::PreviousIo
                })
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: String,
    #[serde(default = "default_project")]
    pub project: String,
    pub name: String,
    pub identifier: String,
    token_sealed: Vec<u8>,
    pub token_sha256: [u8; 32],
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub secret_mode: SecretMode,
    #[serde(default)]
    pub secret_ids: Vec<String>,
    #[serde(default)]
    pub policy_mode: PolicyMode,
    pub created_at: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct SecretRecord {
    pub id: String,
    #[serde(default = "default_project")]
    pub project: String,
    pub name: String,
    pub kind: SecretKind,
    value_sealed: Vec<u8>,
    /// `••••••••wxyz` ([`SecretValue::preview`]): filled in from the sealed
    /// value when the record is read, never stored, so that the database
    /// holds no plaintext fragment of a secret. Records written before held
    /// one here; the store rewrites them when it opens.
    #[serde(skip_serializing, default)]
    pub preview: String,
    /// An Anthropic OAuth token (`sk-ant-oat…`) rather than an API key:
    /// container config names the placeholder variable after it.
    #[serde(default)]
    pub anthropic_oauth: bool,
    /// A ChatGPT login (Codex's auth.json) rather than an OpenAI API key:
    /// the control service refreshes it, agents get a placeholder login.
    #[serde(default)]
    pub chatgpt_login: bool,
    pub host_pattern: String,
    pub path_pattern: String,
    #[serde(default)]
    pub injection: Option<InjectionDoc>,
    /// Injected into plain HTTP too (never on port 443).
    #[serde(default)]
    pub allow_plaintext: bool,
    pub created_at: String,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleRecord {
    pub id: String,
    #[serde(default = "default_project")]
    pub project: String,
    pub name: String,
    pub host_pattern: String,
    pub path_pattern: String,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    pub action: RuleAction,
    pub enabled: bool,
    pub created_at: String,
}

/// An API key or gateway token as listed: never the key, which is kept
/// only as a hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// An API key's project (its id); `None`: an admin key, for every
    /// project. Gateway tokens have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub created_at: String,
}

/// A project: a scope of its own for agents, secrets, rules, API keys,
/// approvals and audit records, so that teams can share one gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectRecord {
    pub id: String,
    pub name: String,
    pub identifier: String,
    pub created_at: String,
}

/// Records that belong to a project.
pub trait InProject {
    fn project(&self) -> &str;
}

impl InProject for AgentRecord {
    fn project(&self) -> &str {
        &self.project
    }
}

impl InProject for SecretRecord {
    fn project(&self) -> &str {
        &self.project
    }
}

impl InProject for RuleRecord {
    fn project(&self) -> &str {
        &self.project
    }
}

/// What a new secret or an update says. `None` fields are left as they are.
#[derive(Default)]
pub struct SecretInput {
    pub name: Option<String>,
    pub kind: Option<SecretKind>,
    pub value: Option<Zeroizing<String>>,
    pub host_pattern: Option<String>,
    pub path_pattern: Option<String>,
    pub injection: Option<Option<InjectionDoc>>,
    pub allow_plaintext: Option<bool>,
    /// An AWS secret's session token: `None` unchanged, `Some(None)` none.
    pub session_token: Option<Option<Zeroizing<String>>>,
}

/// What a new rule or an update says. `None` fields are left as they are.
#[derive(Default, Debug)]
pub struct RuleInput {
    pub name: Option<String>,
    pub host_pattern: Option<String>,
    pub path_pattern: Option<String>,
    pub methods: Option<Vec<String>>,
    pub agent_id: Option<Option<String>>,
    pub action: Option<RuleAction>,
    pub enabled: Option<bool>,
}

pub struct Store {
    db: Db,
    key: SealingKey,
    /// Agents, secrets and rules one project may hold, each: no project can
    /// grow the policy every gateway compiles without bound.
    max_per_project: usize,
}

/// [`Store::max_per_project`] unless changed.
pub const MAX_PER_PROJECT: usize = 10_000;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// Creates `dir` (and missing parents) readable by its owner only (0700).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The mode of a directory other users may read or enter, if it is one:
/// reported at start, since the data directory holds the store and keys.
pub fn open_to_others(dir: &Path) -> Option<u32> {
    let mode = std::fs::metadata(dir).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

impl Store {
    /// Opens (or creates) `<data-dir>/onecli.redb`, refusing one written by a
    /// newer schema.
    pub fn open(data_dir: &Path, key: SealingKey) -> Result<Store> {
        let at = |e| at_path(data_dir, db_err(e));
        create_private_dir(data_dir).map_err(at)?;
        let path = data_dir.join("onecli.redb");
        let db = Db::open(&path).map_err(|e| at_path(&path, db_err(e)))?;
        // Sealed values, hashes and the audit log: the owner's only.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(at)?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let found = meta
                .get("schema_version")
                .map_err(db_err)?
                .map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => return Err(StoreError::NewerSchema { found: v }),
                // Older records read as the default project's (serde
                // defaults); marking the file keeps older binaries, which
                // would mix projects, out of it.
                Some(v) if v < SCHEMA_VERSION => {
                    meta.insert("schema_version", SCHEMA_VERSION)
                        .map_err(db_err)?;
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)
                        .map_err(db_err)?;
                    // Gateways ask for versions newer than the one they hold
                    // (0 when they hold none): the first one is 1.
                    meta.insert("policy_version", 1).map_err(db_err)?;
                }
            }
            for table in [AGENTS, SECRETS, RULES, API_KEYS, GATEWAY_TOKENS] {
                txn.open_table(table).map_err(db_err)?;
            }
            let mut projects = txn.open_table(PROJECTS).map_err(db_err)?;
            if projects.get(DEFAULT_PROJECT).map_err(db_err)?.is_none() {
                let record = ProjectRecord {
                    id: DEFAULT_PROJECT.to_owned(),
                    name: "Default".to_owned(),
                    identifier: DEFAULT_PROJECT.to_owned(),
                    created_at: ids::now_rfc3339(),
                };
                let bytes = serde_json::to_vec(&record).map_err(db_err)?;
                projects
                    .insert(DEFAULT_PROJECT, bytes.as_slice())
                    .map_err(db_err)?;
            }
            txn.open_table(AUDIT).map_err(db_err)?;
            let mut check = txn.open_table(KEY_CHECK).map_err(db_err)?;
            let sealed = check
                .get("canary")
                .map_err(db_err)?
                .map(|v| v.value().to_vec());
            match sealed {
                Some(sealed) => {
                    if key.open(b"key-check", &sealed).is_err() {
                        return Err(StoreError::WrongKey);
                    }
                }
                None => {
                    let sealed = crypto::seal(&key, b"key-check", b"onecli")?;
                    check.insert("canary", sealed.as_slice()).map_err(db_err)?;
                }
            }
        }
        db.commit(txn).map_err(db_err)?;
        let mut store = Store {
            db,
            key,
            max_per_project: MAX_PER_PROJECT,
        };
        store.drop_stored_previews()?;
        store.index_audit()?;
        Ok(store)
    }

    /// Secrets written by earlier versions kept a preview of the value (its
    /// first and last four characters) in clear: rewrites them without it,
    /// then compacts the file so that the freed pages do not keep it either.
    fn drop_stored_previews(&mut self) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut rewritten = 0;
        {
            let mut table = txn.open_table(SECRETS).map_err(db_err)?;
            let mut stale = Vec::new();
            for entry in table.iter().map_err(db_err)? {
                let (id, raw) = entry.map_err(db_err)?;
                let record: serde_json::Value =
                    serde_json::from_slice(raw.value()).map_err(db_err)?;
                if record.get("preview").is_some() {
                    stale.push((id.value().to_owned(), raw.value().to_vec()));
                }
            }
            for (id, raw) in stale {
                let record: SecretRecord = serde_json::from_slice(&raw).map_err(db_err)?;
                let bytes = serde_json::to_vec(&record).map_err(db_err)?;
                table
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
                rewritten += 1;
            }
        }
        self.db.commit(txn).map_err(db_err)?;
        if rewritten > 0 {
            self.db.compact().map_err(db_err)?;
        }
        Ok(())
    }

    pub fn policy_version(&self) -> Result<u64> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        Ok(meta
            .get("policy_version")
            .map_err(db_err)?
            .map_or(0, |v| v.value()))
    }

    /// Caps each project at `n` agents, `n` secrets and `n` rules.
    pub fn with_max_per_project(mut self, n: usize) -> Store {
        self.max_per_project = n;
        self
    }

    // ---- projects -------------------------------------------------------

    /// The store as `project` (an id) sees it.
    pub fn scoped(&self, project: &str) -> Scoped<'_> {
        Scoped {
            store: self,
            project: project.to_owned(),
        }
    }

    pub fn projects(&self) -> Result<Vec<ProjectRecord>> {
        let mut projects: Vec<ProjectRecord> = self.all(PROJECTS)?;
        projects.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(projects)
    }

    /// A project by id, or by identifier.
    pub fn project(&self, key: &str) -> Result<ProjectRecord> {
        if let Some(project) = self.one(PROJECTS, key)? {
            return Ok(project);
        }
        self.projects()?
            .into_iter()
            .find(|p| p.identifier == key)
            .ok_or(StoreError::NotFound("project"))
    }

    /// Whether a project besides the default one was ever created: from
    /// then on, requests naming an unknown project are refused.
    pub fn projects_used(&self) -> Result<bool> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        Ok(meta.get("projects_used").map_err(db_err)?.is_some())
    }

    pub fn create_project(&self, name: &str, identifier: &str) -> Result<ProjectRecord> {
        validate_name(name)?;
        if !is_valid_identifier(identifier) {
            return Err(StoreError::Invalid(format!(
                "identifier {identifier:?} must match ^[a-z0-9][a-z0-9-]{{0,49}}$"
            )));
        }
        let record = ProjectRecord {
            id: ids::new_id(),
            name: name.to_owned(),
            identifier: identifier.to_owned(),
            created_at: ids::now_rfc3339(),
        };
        self.write_unversioned(|w| {
            // An identifier that is another project's id would make that
            // project unreachable by id.
            if w.all::<ProjectRecord>(PROJECTS)?
                .iter()
                .any(|p| p.identifier == record.identifier || p.id == record.identifier)
            {
                return Err(StoreError::Conflict(format!(
                    "A project with identifier \"{identifier}\" already exists."
                )));
            }
            w.txn
                .open_table(META)
                .map_err(db_err)?
                .insert("projects_used", 1)
                .map_err(db_err)?;
            w.put(PROJECTS, &record.id, &record)
        })?;
        Ok(record)
    }

    /// Deletes an empty project (no agents, secrets or rules) and revokes
    /// its API keys, whose ids it returns. The default project stays.
    pub fn delete_project(&self, id: &str) -> Result<Vec<String>> {
        if id == DEFAULT_PROJECT {
            return Err(StoreError::Invalid(
                "The default project cannot be deleted.".into(),
            ));
        }
        self.write_unversioned(|w| {
            if w.one::<ProjectRecord>(PROJECTS, id)?.is_none() {
                return Err(StoreError::NotFound("project"));
            }
            let agents = w.count_in::<AgentRecord>(AGENTS, id)?;
            let secrets = w.count_in::<SecretRecord>(SECRETS, id)?;
            let rules = w.count_in::<RuleRecord>(RULES, id)?;
            if agents + secrets + rules > 0 {
                return Err(StoreError::Conflict(format!(
                    "The project still has {agents} agents, {secrets} secrets and {rules} rules: delete them first."
                )));
            }
            let revoked: Vec<(String, String)> = {
                let table = w.txn.open_table(API_KEYS).map_err(db_err)?;
                let mut keys = Vec::new();
                for entry in table.iter().map_err(db_err)? {
                    let (hash, raw) = entry.map_err(db_err)?;
                    let record: KeyRecord = serde_json::from_slice(raw.value()).map_err(db_err)?;
                    if record.project.as_deref() == Some(id) {
                        keys.push((hash.value().to_owned(), record.id));
                    }
                }
                keys
            };
            for (hash, _) in &revoked {
                w.remove(API_KEYS, hash)?;
            }
            w.remove(PROJECTS, id)?;
            Ok(revoked.into_iter().map(|(_, id)| id).collect())
        })
    }

    // ---- API keys and gateway tokens ------------------------------------

    /// A new API key (`oc_` + 64 hex) for `project` (an id), or an admin
    /// key for every project; only its hash is stored.
    pub fn create_api_key(
        &self,
        name: &str,
        project: Option<&str>,
    ) -> Result<(KeyRecord, Zeroizing<String>)> {
        validate_name(name)?;
        self.create_key(API_KEYS, "oc_", name, project)
    }

    pub fn api_key_count(&self) -> Result<usize> {
        Ok(self.all::<KeyRecord>(API_KEYS)?.len())
    }

    /// The key's record when `presented` is a valid API key.
    pub fn verify_api_key(&self, presented: &str) -> Result<Option<KeyRecord>> {
        let hash = hex::encode(token_sha256(presented));
        self.one::<KeyRecord>(API_KEYS, &hash)
    }

    /// A token a gateway presents to subscribe to snapshots.
    pub fn create_gateway_token(&self, name: &str) -> Result<Zeroizing<String>> {
        Ok(self.create_key(GATEWAY_TOKENS, "ogw_", name, None)?.1)
    }

    /// Makes `token` the one gateway token named `name` (the operator's,
    /// from a Kubernetes Secret, say), beside the generated ones: an earlier
    /// token of that name stops working, so rotating the Secret revokes the
    /// old one. True when it was new. At least 32 printable characters.
    pub fn accept_gateway_token(&self, name: &str, token: &str) -> Result<bool> {
        if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StoreError::Invalid(
                "a gateway token is at least 32 printable characters, without spaces".into(),
            ));
        }
        let hash = hex::encode(token_sha256(token));
        self.write_unversioned(|w| {
            let mut table = w.txn.open_table(GATEWAY_TOKENS).map_err(db_err)?;
            let mut replaced = Vec::new();
            let mut present = false;
            for entry in table.iter().map_err(db_err)? {
                let (key, value) = entry.map_err(db_err)?;
                let record: KeyRecord = serde_json::from_slice(value.value()).map_err(db_err)?;
                if key.value() == hash {
                    present = true;
                } else if record.name == name {
                    replaced.push(key.value().to_owned());
                }
            }
            for key in replaced {
                table.remove(key.as_str()).map_err(db_err)?;
            }
            if present {
                return Ok(false);
            }
            let record = KeyRecord {
                id: ids::new_id(),
                name: name.to_owned(),
                project: None,
                created_at: ids::now_rfc3339(),
            };
            let bytes = serde_json::to_vec(&record).map_err(db_err)?;
            table
                .insert(hash.as_str(), bytes.as_slice())
                .map_err(db_err)?;
            Ok(true)
        })
    }

    pub fn verify_gateway_token(&self, presented: &str) -> Result<bool> {
        self.verify_key(GATEWAY_TOKENS, presented)
    }

    fn create_key(
        &self,
        table: TableDefinition<&str, &[u8]>,
        prefix: &str,
        name: &str,
        project: Option<&str>,
    ) -> Result<(KeyRecord, Zeroizing<String>)> {
        let key = ids::random_token(prefix);
        let hash = hex::encode(token_sha256(&key));
        let record = KeyRecord {
            id: ids::new_id(),
            name: name.to_owned(),
            project: project.map(str::to_owned),
            created_at: ids::now_rfc3339(),
        };
        self.write_unversioned(|w| {
            if let Some(project) = project {
                w.project_exists(project)?;
            }
            w.put(table, &hash, &record)
        })?;
        Ok((record, key))
    }

    pub fn api_keys(&self) -> Result<Vec<KeyRecord>> {
        self.keys(API_KEYS)
    }

    pub fn gateway_tokens(&self) -> Result<Vec<KeyRecord>> {
        self.keys(GATEWAY_TOKENS)
    }

    /// Revokes an API key; the last admin key stays, so that someone can
    /// still manage every project.
    pub fn revoke_api_key(&self, id: &str) -> Result<()> {
        self.revoke_key(API_KEYS, id, |keys, revoked| {
            let admins = keys.iter().filter(|k| k.project.is_none()).count();
            if revoked.project.is_none() && admins <= 1 {
                return Err(StoreError::Invalid(
                    "The last admin API key cannot be revoked: create another first.".into(),
                ));
            }
            Ok(())
        })
    }

    pub fn revoke_gateway_token(&self, id: &str) -> Result<()> {
        self.revoke_key(GATEWAY_TOKENS, id, |_, _| Ok(()))
    }

    fn keys(&self, table: TableDefinition<&str, &[u8]>) -> Result<Vec<KeyRecord>> {
        let mut keys: Vec<KeyRecord> = self.all(table)?;
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    /// Removes the key whose record has `id` (the table is keyed by hash),
    /// if `allowed` (given every key and this one) says so, in the same
    /// transaction.
    fn revoke_key(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        allowed: impl FnOnce(&[KeyRecord], &KeyRecord) -> Result<()>,
    ) -> Result<()> {
        self.write_unversioned(|w| {
            let (hash, keys) = {
                let t = w.txn.open_table(table).map_err(db_err)?;
                let mut found = None;
                let mut keys = Vec::new();
                for entry in t.iter().map_err(db_err)? {
                    let (hash, raw) = entry.map_err(db_err)?;
                    let record: KeyRecord = serde_json::from_slice(raw.value()).map_err(db_err)?;
                    if record.id == id {
                        found = Some((hash.value().to_owned(), keys.len()));
                    }
                    keys.push(record);
                }
                (found.ok_or(StoreError::NotFound("key"))?, keys)
            };
            allowed(&keys, &keys[hash.1])?;
            w.remove(table, &hash.0).map(|_| ())
        })
    }

    fn verify_key(&self, table: TableDefinition<&str, &[u8]>, presented: &str) -> Result<bool> {
        let hash = hex::encode(token_sha256(presented));
        Ok(self.one::<KeyRecord>(table, &hash)?.is_some())
    }

    // ---- the audit log --------------------------------------------------

    /// Appends records in one transaction; past `retention`, the oldest go.
    /// Appends records in one transaction; past `retention` records of a
    /// project, that project's oldest go.
    pub fn append_audit(&self, records: &[AuditRecord], retention: u64) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let mut seq = meta
                .get("audit_seq")
                .map_err(db_err)?
                .map_or(0, |v| v.value());
            let mut table = txn.open_table(AUDIT).map_err(db_err)?;
            let mut index = txn.open_table(AUDIT_BY_PROJECT).map_err(db_err)?;
            let mut lengths: std::collections::BTreeMap<&str, u64> = Default::default();
            for record in records {
                seq += 1;
                let bytes = serde_json::to_vec(record).map_err(db_err)?;
                table.insert(seq, bytes.as_slice()).map_err(db_err)?;
                index
                    .insert((record.project.as_str(), seq), ())
                    .map_err(db_err)?;
                *lengths.entry(record.project.as_str()).or_default() += 1;
            }
            meta.insert("audit_seq", seq).map_err(db_err)?;
            for (project, added) in lengths {
                let key = format!("audit_len:{project}");
                let mut len = meta
                    .get(key.as_str())
                    .map_err(db_err)?
                    .map_or(0, |v| v.value())
                    + added;
                while len > retention {
                    let Some(oldest) = index
                        .range((project, 0)..=(project, u64::MAX))
                        .map_err(db_err)?
                        .next()
                    else {
                        break;
                    };
                    let (_, oldest) = oldest.map_err(db_err)?.0.value();
                    index.remove((project, oldest)).map_err(db_err)?;
                    table.remove(oldest).map_err(db_err)?;
                    len -= 1;
                }
                meta.insert(key.as_str(), len).map_err(db_err)?;
            }
        }
        self.db.commit(txn).map_err(db_err)
    }

    /// Records written before the per-project index get their entries
    /// (once, at open).
    fn index_audit(&self) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            if meta.get("audit_indexed").map_err(db_err)?.is_some() {
                return Ok(());
            }
            let table = txn.open_table(AUDIT).map_err(db_err)?;
            let mut index = txn.open_table(AUDIT_BY_PROJECT).map_err(db_err)?;
            let mut lengths: std::collections::BTreeMap<String, u64> = Default::default();
            for entry in table.iter().map_err(db_err)? {
                let (seq, raw) = entry.map_err(db_err)?;
                let record: AuditRecord = serde_json::from_slice(raw.value()).map_err(db_err)?;
                index
                    .insert((record.project.as_str(), seq.value()), ())
                    .map_err(db_err)?;
                *lengths.entry(record.project).or_default() += 1;
            }
            for (project, len) in lengths {
                meta.insert(format!("audit_len:{project}").as_str(), len)
                    .map_err(db_err)?;
            }
            meta.insert("audit_indexed", 1).map_err(db_err)?;
        }
        self.db.commit(txn).map_err(db_err)
    }

    // ---- the policy document --------------------------------------------

    /// Everything the gateways enforce, at the current version, with secret
    /// values in the clear (the caller seals the envelope for transport).
    pub fn policy_doc(&self) -> Result<PolicyDoc> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let read = Reader { txn: &txn };
        let version = txn
            .open_table(META)
            .map_err(db_err)?
            .get("policy_version")
            .map_err(db_err)?
            .map_or(0, |v| v.value());
        let agents = read
            .all::<AgentRecord>(AGENTS)?
            .into_iter()
            .map(|a| AgentDoc {
                project: a.project,
                id: a.id,
                name: a.name,
                identifier: a.identifier,
                token_sha256: a.token_sha256,
                is_default: a.is_default,
                secret_mode: a.secret_mode,
                secret_ids: a.secret_ids,
                policy_mode: a.policy_mode,
            })
            .collect();
        let mut secrets = Vec::new();
        for s in read.all::<SecretRecord>(SECRETS)? {
            let mut value = crypto::open_string(&self.key, s.id.as_bytes(), &s.value_sealed)?;
            // Gateways never get a login's refresh token.
            if s.kind == SecretKind::Openai && credential::is_chatgpt_login(&value) {
                if let Ok(login) = credential::ChatgptLogin::parse(&value) {
                    value = login.for_gateway();
                }
            }
            secrets.push(SecretDoc {
                project: s.project,
                id: s.id,
                name: s.name,
                kind: s.kind,
                value,
                host_pattern: s.host_pattern,
                path_pattern: s.path_pattern,
                injection: s.injection,
                allow_plaintext: s.allow_plaintext,
            });
        }
        let rules = read
            .all::<RuleRecord>(RULES)?
            .into_iter()
            .map(|r| RuleDoc {
                project: r.project,
                id: r.id,
                name: r.name,
                host_pattern: r.host_pattern,
                path_pattern: r.path_pattern,
                methods: r.methods,
                agent_id: r.agent_id,
                action: r.action,
                enabled: r.enabled,
            })
            .collect();
        Ok(PolicyDoc {
            version,
            agents,
            secrets,
            rules,
            passthrough_hosts: Vec::new(),
        })
    }

    // ---- plumbing -------------------------------------------------------

    fn all<T: DeserializeOwned>(&self, table: TableDefinition<&str, &[u8]>) -> Result<Vec<T>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        Reader { txn: &txn }.all(table)
    }

    fn one<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
    ) -> Result<Option<T>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(table).map_err(db_err)?;
        let value = table.get(id).map_err(db_err)?;
        value
            .map(|v| serde_json::from_slice(v.value()).map_err(db_err))
            .transpose()
    }

    /// Runs `f` in one durable write transaction that bumps the policy version.
    fn write<T>(&self, f: impl FnOnce(&mut Writer<'_>) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let out = f(&mut Writer { txn: &txn })?;
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let version = meta
                .get("policy_version")
                .map_err(db_err)?
                .map_or(0, |v| v.value());
            meta.insert("policy_version", version + 1).map_err(db_err)?;
        }
        finish(&self.db, txn)?;
        Ok(out)
    }

    /// Every project's ChatGPT logins: (id, name, login), for the refresher.
    pub fn chatgpt_logins(&self) -> Result<Vec<(String, String, credential::ChatgptLogin)>> {
        let mut logins = Vec::new();
        for s in self.all::<SecretRecord>(SECRETS)? {
            if !s.chatgpt_login {
                continue;
            }
            let value = crypto::open_string(&self.key, s.id.as_bytes(), &s.value_sealed)?;
            if let Ok(login) = credential::ChatgptLogin::parse(&value) {
                logins.push((s.id, s.name, login));
            }
        }
        Ok(logins)
    }

    /// Stores a refreshed login, if the secret still holds the login the
    /// refresh started from (same refresh token): an edit or a delete
    /// meanwhile wins. Whether it was stored.
    pub fn refreshed_login(
        &self,
        id: &str,
        old_refresh_token: &str,
        fresh: &credential::ChatgptLogin,
    ) -> Result<bool> {
        self.write(|w| {
            let Some(mut s) = w.one::<SecretRecord>(SECRETS, id)? else {
                return Ok(false);
            };
            if !s.chatgpt_login {
                return Ok(false);
            }
            let value = crypto::open_string(&self.key, s.id.as_bytes(), &s.value_sealed)?;
            match credential::ChatgptLogin::parse(&value) {
                Ok(current) if *current.refresh_token == *old_refresh_token => {}
                _ => return Ok(false),
            }
            let json = fresh.to_json();
            s.value_sealed = crypto::seal(&self.key, s.id.as_bytes(), json.as_bytes())?;
            w.put(SECRETS, id, &s)?;
            Ok(true)
        })
    }

    /// A durable write that does not change what gateways enforce.
    fn write_unversioned<T>(&self, f: impl FnOnce(&mut Writer<'_>) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let out = f(&mut Writer { txn: &txn })?;
        finish(&self.db, txn)?;
        Ok(out)
    }
}

/// The store as one project sees it: its agents, secrets, rules and audit
/// records, and no other project's. Records of another project answer
/// `NotFound`, as ones that do not exist.
pub struct Scoped<'s> {
    store: &'s Store,
    project: String,
}

impl Scoped<'_> {
    /// The project's id.
    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn policy_version(&self) -> Result<u64> {
        self.store.policy_version()
    }

    /// Refuses a new record past the project's cap.
    fn room_for<T: DeserializeOwned + InProject>(
        &self,
        w: &Writer<'_>,
        table: TableDefinition<&str, &[u8]>,
        what: &str,
    ) -> Result<()> {
        let max = self.store.max_per_project;
        if w.count_in::<T>(table, &self.project)? >= max {
            return Err(StoreError::Invalid(format!(
                "The project already has {max} {what}, the most one project may hold."
            )));
        }
        Ok(())
    }

    /// Every record of `table` in this project.
    fn all<T: DeserializeOwned + InProject>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>> {
        let mut records: Vec<T> = self.store.all(table)?;
        records.retain(|r| r.project() == self.project);
        Ok(records)
    }

    /// The record `id` of `table` if it is this project's.
    fn one<T: DeserializeOwned + InProject>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
    ) -> Result<Option<T>> {
        Ok(self
            .store
            .one::<T>(table, id)?
            .filter(|r| r.project() == self.project))
    }

    // ---- agents ---------------------------------------------------------

    pub fn agents(&self) -> Result<Vec<AgentRecord>> {
        let mut agents: Vec<AgentRecord> = self.all(AGENTS)?;
        agents.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(agents)
    }

    pub fn agent(&self, id: &str) -> Result<AgentRecord> {
        self.one(AGENTS, id)?.ok_or(StoreError::NotFound("agent"))
    }

    pub fn agent_by_identifier(&self, identifier: &str) -> Result<Option<AgentRecord>> {
        Ok(self
            .agents()?
            .into_iter()
            .find(|a| a.identifier == identifier))
    }

    /// The agent's proxy token, for the API's `accessToken` and container config.
    pub fn agent_token(&self, agent: &AgentRecord) -> Result<Zeroizing<String>> {
        Ok(crypto::open_string(
            &self.store.key,
            agent.id.as_bytes(),
            &agent.token_sealed,
        )?)
    }

    pub fn create_agent(
        &self,
        name: &str,
        identifier: &str,
        is_default: bool,
    ) -> Result<AgentRecord> {
        validate_name(name)?;
        if !is_valid_identifier(identifier) {
            return Err(StoreError::Invalid(format!(
                "identifier {identifier:?} must match ^[a-z0-9][a-z0-9-]{{0,49}}$"
            )));
        }
        let id = ids::new_id();
        let token = ids::agent_token();
        let record = AgentRecord {
            token_sealed: crypto::seal(&self.store.key, id.as_bytes(), token.as_bytes())?,
            token_sha256: token_sha256(&token),
            id,
            project: self.project.clone(),
            name: name.to_owned(),
            identifier: identifier.to_owned(),
            is_default,
            secret_mode: SecretMode::All,
            secret_ids: Vec::new(),
            policy_mode: PolicyMode::Allow,
            created_at: ids::now_rfc3339(),
        };
        self.store.write(|w| {
            w.project_exists(&self.project)?;
            self.room_for::<AgentRecord>(w, AGENTS, "agents")?;
            if w.all::<AgentRecord>(AGENTS)?
                .iter()
                .any(|a| a.project == self.project && a.identifier == record.identifier)
            {
                return Err(StoreError::Conflict(format!(
                    "An agent with identifier \"{identifier}\" already exists."
                )));
            }
            w.put(AGENTS, &record.id, &record)
        })?;
        Ok(record)
    }

    /// The default agent, created as `Default Agent` / `default` when none exists.
    pub fn default_agent(&self) -> Result<AgentRecord> {
        if let Some(agent) = self.agents()?.into_iter().find(|a| a.is_default) {
            return Ok(agent);
        }
        match self.create_agent("Default Agent", "default", true) {
            Ok(agent) => Ok(agent),
            // Raced with another request that created it, or an agent named
            // "default" exists that is not marked default: use that one.
            Err(StoreError::Conflict(_)) => self
                .agent_by_identifier("default")?
                .ok_or(StoreError::NotFound("agent")),
            Err(e) => Err(e),
        }
    }

    pub fn update_agent(
        &self,
        id: &str,
        change: impl FnOnce(&mut AgentRecord) -> Result<()>,
    ) -> Result<AgentRecord> {
        self.store.write(|w| {
            let mut agent: AgentRecord = w
                .mine(AGENTS, id, &self.project)?
                .ok_or(StoreError::NotFound("agent"))?;
            change(&mut agent)?;
            validate_name(&agent.name)?;
            for secret_id in &agent.secret_ids {
                // Another project's secret is as unknown as a missing one.
                if w.mine::<SecretRecord>(SECRETS, secret_id, &self.project)?
                    .is_none()
                {
                    return Err(StoreError::Invalid(format!(
                        "unknown secret id {secret_id:?}"
                    )));
                }
            }
            w.put(AGENTS, id, &agent)?;
            Ok(agent)
        })
    }

    pub fn regenerate_token(&self, id: &str) -> Result<Zeroizing<String>> {
        let token = ids::agent_token();
        let sealed = crypto::seal(&self.store.key, id.as_bytes(), token.as_bytes())?;
        let hash = token_sha256(&token);
        self.update_agent(id, |a| {
            a.token_sealed = sealed;
            a.token_sha256 = hash;
            Ok(())
        })?;
        Ok(token)
    }

    pub fn delete_agent(&self, id: &str) -> Result<()> {
        self.store.write(|w| {
            if w.mine::<AgentRecord>(AGENTS, id, &self.project)?.is_none() {
                return Err(StoreError::NotFound("agent"));
            }
            w.remove(AGENTS, id)?;
            // Rules scoped to the agent go with it.
            for rule in w.all::<RuleRecord>(RULES)? {
                if rule.agent_id.as_deref() == Some(id) {
                    w.remove(RULES, &rule.id)?;
                }
            }
            Ok(())
        })
    }

    // ---- secrets --------------------------------------------------------

    pub fn secrets(&self) -> Result<Vec<SecretRecord>> {
        let mut secrets: Vec<SecretRecord> = self.all(SECRETS)?;
        secrets.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        for s in &mut secrets {
            self.fill_preview(s)?;
        }
        Ok(secrets)
    }

    pub fn secret(&self, id: &str) -> Result<SecretRecord> {
        let mut s = self
            .one(SECRETS, id)?
            .ok_or(StoreError::NotFound("secret"))?;
        self.fill_preview(&mut s)?;
        Ok(s)
    }

    /// The `auth.json` an agent holds for a ChatGPT login: placeholder
    /// tokens, the managed refresh token.
    pub fn chatgpt_placeholder(&self, id: &str) -> Result<Option<String>> {
        let s: SecretRecord = self
            .one(SECRETS, id)?
            .ok_or(StoreError::NotFound("secret"))?;
        if !s.chatgpt_login {
            return Ok(None);
        }
        let value = crypto::open_string(&self.store.key, s.id.as_bytes(), &s.value_sealed)?;
        Ok(credential::ChatgptLogin::parse(&value)
            .ok()
            .map(|login| login.placeholder_auth_json()))
    }

    fn fill_preview(&self, s: &mut SecretRecord) -> Result<()> {
        let value = crypto::open_string(&self.store.key, s.id.as_bytes(), &s.value_sealed)?;
        s.preview = credential::preview(s.kind, &value);
        Ok(())
    }

    pub fn create_secret(&self, input: SecretInput) -> Result<SecretRecord> {
        let (Some(name), Some(kind), Some(value), Some(host_pattern)) =
            (input.name, input.kind, input.value, input.host_pattern)
        else {
            return Err(StoreError::Invalid(
                "name, type, value and hostPattern are required".into(),
            ));
        };
        let value = match kind {
            SecretKind::Aws => aws_value(
                &value,
                input.session_token.flatten().as_deref().map(String::as_str),
            )?,
            _ if input.session_token.flatten().is_some() => {
                return Err(StoreError::Invalid(
                    "a session token goes with type aws".into(),
                ))
            }
            _ => value,
        };
        let id = ids::new_id();
        let record = SecretRecord {
            value_sealed: crypto::seal(&self.store.key, id.as_bytes(), value.as_bytes())?,
            preview: credential::preview(kind, &value),
            anthropic_oauth: value.starts_with(ANTHROPIC_OAUTH_PREFIX),
            chatgpt_login: kind == SecretKind::Openai && credential::is_chatgpt_login(&value),
            id,
            project: self.project.clone(),
            name,
            kind,
            host_pattern,
            path_pattern: input.path_pattern.unwrap_or_else(|| "*".into()),
            injection: input.injection.flatten(),
            allow_plaintext: input.allow_plaintext.unwrap_or(false),
            created_at: ids::now_rfc3339(),
        };
        validate_secret(&record, &value)?;
        self.store.write(|w| {
            w.project_exists(&self.project)?;
            self.room_for::<SecretRecord>(w, SECRETS, "secrets")?;
            w.put(SECRETS, &record.id, &record)
        })?;
        Ok(record)
    }

    pub fn update_secret(&self, id: &str, input: SecretInput) -> Result<SecretRecord> {
        self.store.write(|w| {
            let mut s: SecretRecord = w
                .mine(SECRETS, id, &self.project)?
                .ok_or(StoreError::NotFound("secret"))?;
            // A value is read by its type (an AWS key and its token, a
            // ChatGPT login): kept under another, its parts would leak.
            if input.kind.is_some_and(|k| k != s.kind) && input.value.is_none() {
                return Err(StoreError::Invalid(
                    "a secret's type changes only with a new value".into(),
                ));
            }
            let old = crypto::open_string(&self.store.key, s.id.as_bytes(), &s.value_sealed)?;
            let kind = input.kind.unwrap_or(s.kind);
            let value = match (kind, input.value, input.session_token) {
                // An AWS key and its token change apart or together.
                (SecretKind::Aws, value, token) => {
                    // Parts of the old value only from an AWS key; a new
                    // key drops the old token unless one is given.
                    let was = (s.kind == SecretKind::Aws).then(|| credential::AwsKey::split(&old));
                    let old_token = || {
                        was.as_ref()
                            .and_then(|w| w.session_token)
                            .map(|t| Zeroizing::new(t.to_owned()))
                    };
                    let (key, token) = match value {
                        Some(key) => (key, token.unwrap_or(None)),
                        None => {
                            let key =
                                was.as_ref().map(|w| w.secret_access_key).ok_or_else(|| {
                                    StoreError::Invalid("an aws secret needs its value".into())
                                })?;
                            (
                                Zeroizing::new(key.to_owned()),
                                token.unwrap_or_else(old_token),
                            )
                        }
                    };
                    aws_value(&key, token.as_deref().map(|t| t.as_str()))?
                }
                (_, _, Some(Some(_))) => {
                    return Err(StoreError::Invalid(
                        "a session token goes with type aws".into(),
                    ))
                }
                (_, Some(v), _) => v,
                (_, None, _) => old,
            };
            if let Some(name) = input.name {
                s.name = name;
            }
            if let Some(kind) = input.kind {
                s.kind = kind;
            }
            if let Some(host) = input.host_pattern {
                s.host_pattern = host;
            }
            if let Some(path) = input.path_pattern {
                s.path_pattern = path;
            }
            if let Some(injection) = input.injection {
                s.injection = injection;
            }
            if let Some(allow) = input.allow_plaintext {
                s.allow_plaintext = allow;
            }
            s.value_sealed = crypto::seal(&self.store.key, s.id.as_bytes(), value.as_bytes())?;
            s.preview = credential::preview(s.kind, &value);
            s.anthropic_oauth = value.starts_with(ANTHROPIC_OAUTH_PREFIX);
            s.chatgpt_login = s.kind == SecretKind::Openai && credential::is_chatgpt_login(&value);
            validate_secret(&s, &value)?;
            w.put(SECRETS, id, &s)?;
            Ok(s)
        })
    }

    pub fn delete_secret(&self, id: &str) -> Result<()> {
        self.store.write(|w| {
            if w.mine::<SecretRecord>(SECRETS, id, &self.project)?
                .is_none()
            {
                return Err(StoreError::NotFound("secret"));
            }
            w.remove(SECRETS, id)?;
            // Selective agents lose the assignment.
            for mut agent in w.all::<AgentRecord>(AGENTS)? {
                if agent.secret_ids.iter().any(|s| s == id) {
                    agent.secret_ids.retain(|s| s != id);
                    w.put(AGENTS, &agent.id.clone(), &agent)?;
                }
            }
            Ok(())
        })
    }

    // ---- rules ----------------------------------------------------------

    pub fn rules(&self) -> Result<Vec<RuleRecord>> {
        let mut rules: Vec<RuleRecord> = self.all(RULES)?;
        rules.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(rules)
    }

    pub fn rule(&self, id: &str) -> Result<RuleRecord> {
        self.one(RULES, id)?.ok_or(StoreError::NotFound("rule"))
    }

    pub fn create_rule(&self, input: RuleInput) -> Result<RuleRecord> {
        let (Some(name), Some(host_pattern), Some(action)) =
            (input.name, input.host_pattern, input.action)
        else {
            return Err(StoreError::Invalid(
                "name, hostPattern and action are required".into(),
            ));
        };
        let record = RuleRecord {
            id: ids::new_id(),
            project: self.project.clone(),
            name,
            host_pattern,
            path_pattern: input.path_pattern.unwrap_or_else(|| "*".into()),
            methods: input.methods.unwrap_or_default(),
            agent_id: input.agent_id.flatten(),
            action,
            enabled: input.enabled.unwrap_or(true),
            created_at: ids::now_rfc3339(),
        };
        self.store.write(|w| {
            w.project_exists(&self.project)?;
            self.room_for::<RuleRecord>(w, RULES, "rules")?;
            w.validate_rule(&record)?;
            w.put(RULES, &record.id, &record)
        })?;
        Ok(record)
    }

    pub fn update_rule(&self, id: &str, input: RuleInput) -> Result<RuleRecord> {
        self.store.write(|w| {
            let mut r: RuleRecord = w
                .mine(RULES, id, &self.project)?
                .ok_or(StoreError::NotFound("rule"))?;
            if let Some(v) = input.name {
                r.name = v;
            }
            if let Some(v) = input.host_pattern {
                r.host_pattern = v;
            }
            if let Some(v) = input.path_pattern {
                r.path_pattern = v;
            }
            if let Some(v) = input.methods {
                r.methods = v;
            }
            if let Some(v) = input.agent_id {
                r.agent_id = v;
            }
            if let Some(v) = input.action {
                r.action = v;
            }
            if let Some(v) = input.enabled {
                r.enabled = v;
            }
            w.validate_rule(&r)?;
            w.put(RULES, id, &r)?;
            Ok(r)
        })
    }

    pub fn delete_rule(&self, id: &str) -> Result<()> {
        self.store.write(|w| {
            if w.mine::<RuleRecord>(RULES, id, &self.project)?.is_none() {
                return Err(StoreError::NotFound("rule"));
            }
            w.remove(RULES, id).map(|_| ())
        })
    }

    /// Newest first: at most `limit` records, of `agent` (id or identifier)
    /// when given, at or after `since_ms` when given.
    pub fn audit(
        &self,
        agent: Option<&str>,
        since_ms: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        let txn = self.store.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(AUDIT).map_err(db_err)?;
        let index = txn.open_table(AUDIT_BY_PROJECT).map_err(db_err)?;
        let project = self.project.as_str();
        let mut out = Vec::new();
        for entry in index
            .range((project, 0)..=(project, u64::MAX))
            .map_err(db_err)?
            .rev()
        {
            let (_, seq) = entry.map_err(db_err)?.0.value();
            let Some(raw) = table.get(seq).map_err(db_err)? else {
                continue;
            };
            let record: AuditRecord = serde_json::from_slice(raw.value()).map_err(db_err)?;
            if since_ms.is_some_and(|since| record.unix_ms < since) {
                break;
            }
            if agent.is_some_and(|a| a != record.agent && a != record.agent_id) {
                continue;
            }
            out.push(record);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

thread_local! {
    static DRY_RUN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (store calls on this thread) as a dry run: every check and
/// every lookup happens as usual, errors included, and every write is
/// rolled back instead of committed. `--dry-run` in the CLI.
pub fn dry_run<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            DRY_RUN.with(|d| d.set(self.0));
        }
    }
    let _reset = Reset(DRY_RUN.with(|d| d.replace(true)));
    f()
}

/// Commits a write, or rolls it back inside [`dry_run`].
fn finish(db: &Db, txn: redb::WriteTransaction) -> Result<()> {
    if DRY_RUN.with(std::cell::Cell::get) {
        txn.abort().map_err(db_err)
    } else {
        db.commit(txn).map_err(db_err)
    }
}

struct Reader<'t> {
    txn: &'t redb::ReadTransaction,
}

impl Reader<'_> {
    fn all<T: DeserializeOwned>(&self, table: TableDefinition<&str, &[u8]>) -> Result<Vec<T>> {
        decode_all(&self.txn.open_table(table).map_err(db_err)?)
    }
}

/// Every record of a table, decoded.
fn decode_all<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for entry in table.iter().map_err(db_err)? {
        let (_, v) = entry.map_err(db_err)?;
        out.push(serde_json::from_slice(v.value()).map_err(db_err)?);
    }
    Ok(out)
}

struct Writer<'t> {
    txn: &'t redb::WriteTransaction,
}

impl Writer<'_> {
    fn all<T: DeserializeOwned>(&self, table: TableDefinition<&str, &[u8]>) -> Result<Vec<T>> {
        decode_all(&self.txn.open_table(table).map_err(db_err)?)
    }

    fn one<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
    ) -> Result<Option<T>> {
        let table = self.txn.open_table(table).map_err(db_err)?;
        let value = table.get(id).map_err(db_err)?;
        value
            .map(|v| serde_json::from_slice(v.value()).map_err(db_err))
            .transpose()
    }

    /// The record `id` of `table` if it belongs to `project`.
    fn mine<T: DeserializeOwned + InProject>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        project: &str,
    ) -> Result<Option<T>> {
        Ok(self.one::<T>(table, id)?.filter(|r| r.project() == project))
    }

    /// How many records of `table` belong to `project`.
    fn count_in<T: DeserializeOwned + InProject>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        project: &str,
    ) -> Result<usize> {
        Ok(self
            .all::<T>(table)?
            .iter()
            .filter(|r| r.project() == project)
            .count())
    }

    /// Refuses a write into a project deleted meanwhile.
    fn project_exists(&self, project: &str) -> Result<()> {
        match self.one::<ProjectRecord>(PROJECTS, project)? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound("project")),
        }
    }

    fn put<T: Serialize>(
        &mut self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        record: &T,
    ) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(db_err)?;
        let mut table = self.txn.open_table(table).map_err(db_err)?;
        table.insert(id, bytes.as_slice()).map_err(db_err)?;
        Ok(())
    }

    fn remove(&mut self, table: TableDefinition<&str, &[u8]>, id: &str) -> Result<bool> {
        let mut table = self.txn.open_table(table).map_err(db_err)?;
        let removed = table.remove(id).map_err(db_err)?.is_some();
        Ok(removed)
    }

    fn validate_rule(&self, r: &RuleRecord) -> Result<()> {
        validate_name(&r.name)?;
        HostPattern::parse(&r.host_pattern)
            .map_err(|e| StoreError::Invalid(format!("hostPattern: {e}")))?;
        PathPattern::parse(&r.path_pattern)
            .map_err(|e| StoreError::Invalid(format!("pathPattern: {e}")))?;
        for m in &r.methods {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(StoreError::Invalid(format!(
                    "method {m:?} is not an upper-case HTTP method"
                )));
            }
        }
        if let RuleAction::RateLimit { limit: 0, .. } = r.action {
            return Err(StoreError::Invalid("rateLimit must be at least 1".into()));
        }
        if let Some(agent) = &r.agent_id {
            if self
                .mine::<AgentRecord>(AGENTS, agent, &r.project)?
                .is_none()
            {
                return Err(StoreError::Invalid(format!("unknown agentId {agent:?}")));
            }
        }
        Ok(())
    }
}

fn validate_name(name: &str) -> Result<()> {
    let len = name.chars().count();
    if len == 0 || len > MAX_NAME || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "name must be 1 to {MAX_NAME} printable characters"
        )));
    }
    Ok(())
}

/// An AWS secret's stored value: the key, and its session token.
fn aws_value(key: &str, token: Option<&str>) -> Result<Zeroizing<String>> {
    credential::AwsKey::join(key, token).map_err(StoreError::Invalid)
}

fn validate_secret(s: &SecretRecord, value: &str) -> Result<()> {
    validate_name(&s.name)?;
    if value.is_empty() || value.len() > MAX_SECRET {
        return Err(StoreError::Invalid(format!(
            "value must be 1 to {MAX_SECRET} bytes"
        )));
    }
    if s.kind == SecretKind::Openai && credential::is_chatgpt_login(value) {
        let login = credential::ChatgptLogin::parse(value).map_err(StoreError::Invalid)?;
        if login.refresh_token.is_empty() {
            return Err(StoreError::Invalid(
                "auth.json: tokens.refresh_token is needed to keep the login fresh".into(),
            ));
        }
    }
    // The gateway compiles the same way: what is stored always compiles.
    let doc = PolicyDoc {
        secrets: vec![SecretDoc {
            project: s.project.clone(),
            id: s.id.clone(),
            name: s.name.clone(),
            kind: s.kind,
            value: Zeroizing::new(value.to_owned()),
            host_pattern: s.host_pattern.clone(),
            path_pattern: s.path_pattern.clone(),
            injection: s.injection.clone(),
            allow_plaintext: s.allow_plaintext,
        }],
        ..PolicyDoc::default()
    };
    onecli_policy::Snapshot::compile(doc)
        .map(|_| ())
        .map_err(|errors| {
            StoreError::Invalid(
                errors
                    .iter()
                    .map(|e| {
                        format!(
                            "{}{}",
                            e.field.map(|f| format!("{f}: ")).unwrap_or_default(),
                            e.message
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
}

/// `minute|hour|day` as stored and shown.
pub fn parse_window(s: &str) -> Option<RateWindow> {
    match s {
        "minute" => Some(RateWindow::Minute),
        "hour" => Some(RateWindow::Hour),
        "day" => Some(RateWindow::Day),
        _ => None,
    }
}

#[cfg(test)]
mod tests;

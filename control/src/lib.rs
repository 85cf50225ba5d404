//! The OneCLI control service: the store (agents, encrypted secrets, rules,
//! keys), the REST API, and the policy snapshots it publishes to gateways.
//! It never proxies agent traffic; the gateway never reads its store.

pub mod api;
pub mod approvals;
pub mod audit;
pub mod bootstrap;
pub mod crypto;
pub mod dashboard;
pub mod ids;
pub mod metrics;
pub mod publish;
pub mod refresh;
pub mod store;

pub use onecli_policy::seal::SealingKey;
pub use store::{Store, StoreError};

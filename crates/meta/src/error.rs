//! Errors of the meta service and their one mapping to gRPC statuses.

use std::path::PathBuf;

use openraft::BasicNode;
use openraft::error::{ClientWriteError, Fatal, RaftError};
use strata_common::ErrorClass;
use strata_common::tenant::TenantIdError;

use crate::NodeId;
use crate::state::CommandError;

/// Everything that can go wrong in the meta service.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("invalid meta option {key}: {reason}")]
    InvalidOption { key: &'static str, reason: String },
    #[error("failed to open the meta store in {path}")]
    OpenStore {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid raft configuration")]
    RaftConfig(#[source] Box<openraft::ConfigError>),
    #[error("raft has stopped")]
    Stopped(#[source] Box<Fatal<NodeId>>),
    #[error("failed to initialize the meta cluster: {0}")]
    Initialize(String),
    #[error("invalid tenant id")]
    InvalidTenant(#[source] TenantIdError),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("no meta leader elected yet")]
    NoLeader,
    #[error("meta leadership changed during the request, retry")]
    NotLeader,
    #[error("membership change refused")]
    Membership(#[source] Box<openraft::error::ChangeMembershipError<NodeId>>),
    #[error("malformed raft message")]
    RaftMessage(#[source] serde_json::Error),
    #[error("failed to encode a raft message")]
    Encode(#[source] serde_json::Error),
}

impl MetaError {
    /// The classification shared by every role.
    pub fn class(&self) -> ErrorClass {
        match self {
            MetaError::InvalidTenant(_)
            | MetaError::InvalidArgument(_)
            | MetaError::RaftMessage(_)
            | MetaError::InvalidOption { .. } => ErrorClass::BadData,
            MetaError::Command(CommandError::StoreNotFound { .. }) => ErrorClass::NotFound,
            MetaError::Command(CommandError::TooFewStores { .. }) => ErrorClass::Unprocessable,
            MetaError::NoLeader | MetaError::NotLeader | MetaError::Stopped(_) => {
                ErrorClass::Unavailable
            }
            MetaError::Membership(_) => ErrorClass::Unprocessable,
            MetaError::OpenStore { .. }
            | MetaError::RaftConfig(_)
            | MetaError::Initialize(_)
            | MetaError::Encode(_) => ErrorClass::Internal,
        }
    }

    /// Classifies a failed `client_write`, `add_learner` or `change_membership`.
    pub(crate) fn from_write(
        error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    ) -> Self {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => MetaError::NotLeader,
            RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
                MetaError::Membership(Box::new(error))
            }
            RaftError::Fatal(fatal) => MetaError::Stopped(Box::new(fatal)),
        }
    }
}

/// The only place a meta error becomes a gRPC status. Internal errors keep
/// their detail in the log, not in the answer.
impl From<MetaError> for tonic::Status {
    fn from(error: MetaError) -> Self {
        let class = error.class();
        let message = match &error {
            MetaError::InvalidTenant(source) => format!("{error}: {source}"),
            MetaError::Membership(source) => format!("{error}: {source}"),
            _ if class == ErrorClass::Internal => {
                tracing::error!(%error, "meta request failed");
                "internal meta error".to_owned()
            }
            _ => error.to_string(),
        };
        tonic::Status::new(class.grpc_code(), message)
    }
}

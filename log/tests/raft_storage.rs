//! openraft's own storage suite against cairn's sled raft log and event-log state machine.

use cairn_log::engine::raft::{LogStore, NodeId, StateMachine, TypeConfig};
use cairn_log::engine::{storage, LogConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use prometheus_client::registry::Registry;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().unwrap();
        let (log_store, state_machine) = storage(
            LogConfig::new(dir.path().join("log")),
            &mut Registry::default(),
        )
        .unwrap();
        Ok((dir, log_store, state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(SledBuilder).expect("the storage passes openraft's suite");
}

//! Account removal as one operation, shared by in-band cancellation (XEP-0077 §3.2) and the
//! admin CLI: modules say goodbye while the account's data still exists (unavailable
//! presence, cancelled subscriptions), then the data goes, then its sessions close.

use std::sync::Arc;

use starling_proto::{Jid, StreamError, StreamErrorCondition};
use starling_store::{StoreError, StoreResult};

use crate::hooks::AccountEvent;
use crate::Server;

impl Server {
    /// Deletes a local account and everything stored for it. `NotFound` if there is none.
    pub async fn remove_account(self: &Arc<Self>, account: &Jid) -> StoreResult<()> {
        let account = account.bare();
        let (host, user) = match account.node() {
            Some(user) if self.is_local_host(account.domain()) => (account.domain(), user),
            _ => return Err(StoreError::NotFound(account.to_string())),
        };
        if !self.store.account_exists(host, user).await? {
            return Err(StoreError::NotFound(account.to_string()));
        }
        self.hooks
            .fire_account(AccountEvent::Removing, self, &account)
            .await;
        self.store.delete_account(host, user).await?;
        for session in self.sessions.get_bare(&account) {
            session.close(
                StreamError::new(StreamErrorCondition::NotAuthorized)
                    .with_text("the account was deleted"),
            );
        }
        tracing::info!(%account, "account removed");
        Ok(())
    }
}

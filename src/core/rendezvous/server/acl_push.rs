//! The server's side of access rules (`core::acl`): each node gets the rules that name it as a
//! destination, resolved to its peers' addresses, in `Welcome` and again in an `Acl` message
//! whenever the store changes what it should enforce (a rule, a tag, a member). The copy last
//! sent is kept in the node's session, so an unrelated store change sends nothing.

use super::{Registry, ServerCore};
use crate::core::acl::policy::{self, NodePolicy};
use crate::core::keys::PublicKey;
use crate::core::rendezvous::messages::ServerMessage;
use crate::core::rendezvous::registry::{AccessRules, Member};

/// The policy for `me` under `access`, among `members`.
pub(super) fn resolve(access: &AccessRules, members: &[Member], me: &Member) -> Option<NodePolicy> {
    if access.rules.is_empty() {
        return None;
    }
    let view = |m: &Member| policy::Member {
        name: m.name.clone(),
        virtual_ip: m.virtual_ip,
        tags: access.tags.get(&m.public_key).cloned().unwrap_or_default(),
    };
    let all: Vec<policy::Member> = members.iter().map(view).collect();
    policy::for_member(&access.rules, &all, &view(me))
}

impl<R: Registry> ServerCore<R> {
    /// What `member` enforces now. A store error fails closed: no connection is admitted
    /// (an empty policy) until the store answers again.
    pub(super) fn policy_of(&self, member: &Member) -> Option<NodePolicy> {
        let access = match self.registry.access_rules(&member.network) {
            Ok(a) if a.rules.is_empty() => return None,
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the access rules; denying until it can");
                return Some(NodePolicy::default());
            }
        };
        match self.registry.members(&member.network) {
            Ok(members) => resolve(&access, &members, member),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the members; denying until it can");
                Some(NodePolicy::default())
            }
        }
    }

    /// A member joined or left through this server (its own writes do not move the store's
    /// `data_version`): rules naming members by address must follow, or a newcomer given a
    /// departed member's address would inherit what that member was allowed.
    pub(super) fn refresh_acl(&mut self, network: &str) {
        match self.registry.access_rules(network) {
            Ok(a) if a.rules.is_empty() => {}
            Ok(_) => match self.registry.members(network) {
                Ok(members) => self.push_acl(network, &members),
                Err(e) => tracing::error!(error = %e, "cannot re-read the members"),
            },
            Err(e) => tracing::error!(error = %e, "cannot re-read the access rules"),
        }
    }

    /// After a store change: sends each online member of `network` its policy if it changed.
    pub(super) fn push_acl(&mut self, network: &str, members: &[Member]) {
        let access = match self.registry.access_rules(network) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot re-read the access rules");
                return;
            }
        };
        let online: Vec<(PublicKey, super::ConnId)> = self
            .online
            .iter()
            .filter(|((n, _), _)| n == network)
            .map(|((_, k), c)| (*k, *c))
            .collect();
        for (key, conn) in online {
            let Some(me) = members.iter().find(|m| m.public_key == key) else {
                continue;
            };
            let policy = resolve(&access, members, me);
            let Some(session) = self.conns.get_mut(&conn).and_then(|c| c.session.as_mut()) else {
                continue;
            };
            if session.acl == policy {
                continue;
            }
            session.acl = policy.clone();
            tracing::info!(
                network,
                name = me.name,
                "access rules changed; sending them"
            );
            self.send(conn, &ServerMessage::Acl { policy });
        }
    }
}

//! Dashboard sessions, kept on the server: the browser holds only a random
//! id in an `HttpOnly`, `SameSite=Strict` cookie, and the service only its
//! SHA-256. Also the one-time sign-in links `onecli dashboard` hands out,
//! and the count of failed sign-ins that rate-limits guessing.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::api::Scope;

/// How long a session lasts from sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long a one-time sign-in link is good for.
pub const LINK_TTL: Duration = Duration::from_secs(5 * 60);
/// Failed sign-ins allowed in any minute, all sources together.
pub const FAILURES_PER_MINUTE: usize = 10;
/// Sessions held at once; the oldest goes first past it.
const MAX_SESSIONS: usize = 1_000;
/// Sessions one API key may hold: past it, that key's oldest goes, so no
/// key (a project's, say) can push others' sessions out.
const MAX_SESSIONS_PER_KEY: usize = 50;
/// Links outstanding at once.
const MAX_LINKS: usize = 100;
/// Links one API key may have outstanding.
const MAX_LINKS_PER_KEY: usize = 5;

type Digest = [u8; 32];

#[derive(Debug, Clone)]
pub struct Session {
    /// The token every state-changing form carries.
    pub csrf: String,
    /// What the key that signed in may see, and the project shown now (an
    /// admin's switcher changes it).
    pub scope: Scope,
    expires: Instant,
}

#[derive(Default)]
struct State {
    sessions: HashMap<Digest, Session>,
    /// A link signs in with the scope of the key that asked for it.
    links: HashMap<Digest, (Instant, Scope)>,
    failures: VecDeque<Instant>,
}

#[derive(Default)]
pub struct Sessions {
    state: Mutex<State>,
}

fn digest(secret: &str) -> Digest {
    onecli_policy::token_sha256(secret)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session; returns the cookie value (shown to nobody else).
    pub fn start(&self, scope: Scope) -> Zeroizing<String> {
        let id = crate::ids::random_token("ods_");
        let session = Session {
            csrf: crate::ids::random_token("").to_string(),
            scope,
            expires: Instant::now() + SESSION_TTL,
        };
        let mut state = self.lock();
        let now = Instant::now();
        state.sessions.retain(|_, s| s.expires > now);
        let key = session.scope.key_id.clone();
        let of_key = state
            .sessions
            .values()
            .filter(|s| s.scope.key_id == key)
            .count();
        if of_key >= MAX_SESSIONS_PER_KEY || state.sessions.len() >= MAX_SESSIONS {
            // The key's own oldest when it is at its cap; else the oldest.
            let per_key = of_key >= MAX_SESSIONS_PER_KEY;
            if let Some(oldest) = state
                .sessions
                .iter()
                .filter(|(_, s)| !per_key || s.scope.key_id == key)
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
            {
                state.sessions.remove(&oldest);
            }
        }
        state.sessions.insert(digest(&id), session);
        id
    }

    /// The live session for a cookie value.
    pub fn get(&self, cookie: &str) -> Option<Session> {
        let state = self.lock();
        state
            .sessions
            .get(&digest(cookie))
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    /// Shows another project in an admin's session.
    pub fn switch_project(&self, cookie: &str, project: &str) -> bool {
        let mut state = self.lock();
        match state.sessions.get_mut(&digest(cookie)) {
            Some(session) if session.scope.admin => {
                session.scope.project = project.to_owned();
                true
            }
            _ => false,
        }
    }

    pub fn end(&self, cookie: &str) {
        self.lock().sessions.remove(&digest(cookie));
    }

    /// Ends every session, and every link, an API key opened: it was
    /// revoked.
    pub fn end_key(&self, key_id: &str) {
        let mut state = self.lock();
        state.sessions.retain(|_, s| s.scope.key_id != key_id);
        state.links.retain(|_, (_, scope)| scope.key_id != key_id);
    }

    /// A project was deleted: sessions shown in it by an admin go back to
    /// the default project.
    pub fn project_gone(&self, project: &str) {
        for session in self.lock().sessions.values_mut() {
            if session.scope.project == project && session.scope.admin {
                session.scope.project = onecli_policy::model::DEFAULT_PROJECT.to_owned();
            }
        }
    }

    /// A one-time sign-in token, good for [`LINK_TTL`].
    pub fn new_link(&self, scope: Scope) -> Zeroizing<String> {
        let token = crate::ids::random_token("odl_");
        let mut state = self.lock();
        let now = Instant::now();
        state.links.retain(|_, (expires, _)| *expires > now);
        let of_key = state
            .links
            .values()
            .filter(|(_, s)| s.key_id == scope.key_id)
            .count();
        if of_key >= MAX_LINKS_PER_KEY || state.links.len() >= MAX_LINKS {
            let per_key = of_key >= MAX_LINKS_PER_KEY;
            if let Some(oldest) = state
                .links
                .iter()
                .filter(|(_, (_, s))| !per_key || s.key_id == scope.key_id)
                .min_by_key(|(_, (e, _))| *e)
                .map(|(k, _)| *k)
            {
                state.links.remove(&oldest);
            }
        }
        state.links.insert(digest(&token), (now + LINK_TTL, scope));
        token
    }

    /// Uses up a link token: its scope once, for a live one.
    pub fn redeem_link(&self, token: &str) -> Option<Scope> {
        self.lock()
            .links
            .remove(&digest(token))
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, scope)| scope)
    }

    /// Whether sign-ins are refused for now, after too many failures.
    pub fn throttled(&self) -> bool {
        let mut state = self.lock();
        let minute_ago = Instant::now() - Duration::from_secs(60);
        while state.failures.front().is_some_and(|t| *t < minute_ago) {
            state.failures.pop_front();
        }
        state.failures.len() >= FAILURES_PER_MINUTE
    }

    pub fn failed(&self) {
        let mut state = self.lock();
        state.failures.push_back(Instant::now());
        while state.failures.len() > FAILURES_PER_MINUTE * 2 {
            state.failures.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_links_and_throttling() {
        let s = Sessions::default();
        let cookie = s.start(Scope::default_admin());
        let session = s.get(&cookie).expect("live");
        assert_eq!(session.csrf.len(), 64);
        assert!(s.get("ods_forged").is_none());
        s.end(&cookie);
        assert!(s.get(&cookie).is_none());

        let scoped = Scope {
            project: "p2".into(),
            admin: false,
            key_id: "k2".into(),
        };
        let link = s.new_link(scoped);
        let redeemed = s.redeem_link(&link).expect("live");
        assert_eq!((redeemed.project.as_str(), redeemed.admin), ("p2", false));
        assert!(s.redeem_link(&link).is_none(), "single use");
        assert!(s.redeem_link("odl_forged").is_none());

        // Only an admin's session switches projects.
        let project_session = s.start(redeemed);
        assert!(!s.switch_project(&project_session, "default"));
        let admin_session = s.start(Scope::default_admin());
        assert!(s.switch_project(&admin_session, "p2"));
        assert_eq!(s.get(&admin_session).expect("live").scope.project, "p2");
        s.project_gone("p2");
        assert_eq!(
            s.get(&admin_session).expect("live").scope.project,
            "default"
        );

        // A revoked key's sessions and links end; others' stay.
        let link = s.new_link(Scope {
            key_id: "k2".into(),
            ..Scope::default_admin()
        });
        s.end_key("k2");
        assert!(s.get(&project_session).is_none());
        assert!(s.redeem_link(&link).is_none());
        assert!(s.get(&admin_session).is_some());

        // One key cannot push out another's sessions or links.
        let flood = Scope {
            key_id: "flood".into(),
            ..Scope::default_admin()
        };
        let kept_link = s.new_link(Scope::default_admin());
        for _ in 0..MAX_SESSIONS_PER_KEY * 3 {
            s.start(flood.clone());
            s.new_link(flood.clone());
        }
        assert!(s.get(&admin_session).is_some());
        assert!(s.redeem_link(&kept_link).is_some());

        for _ in 0..FAILURES_PER_MINUTE {
            assert!(!s.throttled());
            s.failed();
        }
        assert!(s.throttled());
    }
}

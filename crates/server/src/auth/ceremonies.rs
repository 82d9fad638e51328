//! Passkey ceremonies waiting for their answer: a random challenge per
//! ceremony, in server memory, single use, bound to its purpose (the session
//! registering, stepping up or approving a CLI sign-in, or the username
//! signing in) and gone after [`CEREMONY_TTL_MS`]. A restart simply
//! invalidates ceremonies in flight; nothing about them needs to persist.
//! The WebAuthn checks of the answers are in [`super::passkey`].
//!
//! **Budgets** (issue 13): a login ceremony starts without a session, so
//! anyone can ask for many. Before, one table of 10,000 served every
//! ceremony and, once full, refused them all (503) for three minutes.
//! Now waiting ceremonies are counted in budgets, and a full budget never
//! refuses: its oldest ceremony gives way (expired ones leave first).
//! - Unauthenticated (login) ceremonies: at most
//!   [`MAX_LOGIN_CEREMONIES_PER_ADDRESS`] (16) per client address (an IPv4
//!   address, an IPv6 /64: the login throttle's [`throttle::addr_key`]),
//!   [`MAX_LOGIN_CEREMONIES_PER_USERNAME`] (4) per username (the oldest of
//!   that name asked from the same address goes first, else the name's
//!   oldest: one address asking for someone's name mostly churns its
//!   own), and
//!   [`MAX_LOGIN_CEREMONIES`] (8,192) in all. A client that asks again
//!   drops only its own oldest, so it is never locked out by its own
//!   retries; one address holds 16, and filling the whole pool takes 512
//!   addresses asking all the time. Even then a person asking gets a
//!   working ceremony, which lasts until 8,192 newer ones have been asked
//!   for (or its three minutes are up).
//! - Signed-in ceremonies (registration, step-up, CLI sign-in approval)
//!   have a budget of their own, keyed by the session, which login
//!   ceremonies never touch: [`MAX_CEREMONIES_PER_SESSION`] (8) per
//!   session and [`MAX_SESSION_CEREMONIES`] (2,048) in all. However many
//!   login ceremonies wait, a signed-in operator can start one.
//! - Memory stays bounded: about 8 MiB at the very worst (see `Pool`).
//!
//! The budgets decide only which ceremonies wait; answering one
//! (`Ceremonies::finish`) is as before: once, for its purpose, in time.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{session, throttle};

/// How long a ceremony (its challenge) may be answered.
pub const CEREMONY_TTL_MS: i64 = 3 * 60 * 1000;
/// Most unauthenticated (login) ceremonies waiting at once, whoever asked:
/// starting one needs no session, so this caps what anyone can make the
/// server hold. When full, the oldest gives way (see the module notes).
pub const MAX_LOGIN_CEREMONIES: usize = 8_192;
/// Most login ceremonies waiting for one client address (an IPv4 address,
/// an IPv6 /64: [`throttle::addr_key`]). A few people signing in at once
/// behind one NAT, each retrying, fit; one attacker's address holds no more.
pub const MAX_LOGIN_CEREMONIES_PER_ADDRESS: usize = 16;
/// Most login ceremonies waiting for one username: a person with a tab or
/// two and a retry.
pub const MAX_LOGIN_CEREMONIES_PER_USERNAME: usize = 4;
/// Most signed-in ceremonies (registration, step-up, CLI sign-in approval)
/// waiting at once: a budget of their own, which login ceremonies never use.
pub const MAX_SESSION_CEREMONIES: usize = 2_048;
/// Most ceremonies one session may have waiting.
pub const MAX_CEREMONIES_PER_SESSION: usize = 8;

/// What a challenge was issued for; an answer for anything else fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Registration by the session whose token hashes to this.
    Register { session: [u8; 32] },
    /// Login as this username.
    Login { username: String },
    /// Step-up by this session.
    StepUp { session: [u8; 32] },
    /// Approval of the CLI sign-in with this user code, by this session.
    DeviceApproval {
        session: [u8; 32],
        user_code: String,
    },
}

/// Whose budget a waiting ceremony uses (see the module notes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Unauthenticated: asked from this client address key
    /// ([`throttle::addr_key`]) to sign in as this username.
    Login { addr: String, username: String },
    /// Started by the signed-in session whose token hashes to this.
    Session([u8; 32]),
}

struct Pending {
    challenge: [u8; 32],
    purpose: Purpose,
    expires_at: i64,
    /// Issue order within the pool: the smallest is the oldest.
    seq: u64,
    owner: Owner,
}

/// The waiting ceremonies and their budgets: pure (no clock, no randomness:
/// the caller gives ids, challenges and the time), so every rule of the
/// module notes is tested directly.
///
/// Bounded: at most [`MAX_LOGIN_CEREMONIES`] + [`MAX_SESSION_CEREMONIES`]
/// entries, each in its pool's age order and in one or two per-key lists
/// (address and username, or session) of at most 16 ids; an emptied list
/// goes. At the worst (every login ceremony from its own /64 for its own
/// 64-byte username, every session with one ceremony) that is about 1 KiB
/// per login ceremony and 0.25 KiB per signed-in one, 8.2 MiB in all
/// (counted with a counting allocator when this was written; the hash
/// tables' buckets are most of it).
#[derive(Default)]
struct Pool {
    /// By the hash of the ceremony's id.
    pending: HashMap<[u8; 32], Pending>,
    next_seq: u64,
    /// Unauthenticated ceremonies, oldest first; and per address, per
    /// username (oldest first, at most their cap).
    logins: BTreeMap<u64, [u8; 32]>,
    by_addr: HashMap<String, Vec<[u8; 32]>>,
    by_username: HashMap<String, Vec<[u8; 32]>>,
    /// Signed-in ceremonies, oldest first; and per session.
    sessions: BTreeMap<u64, [u8; 32]>,
    by_session: HashMap<[u8; 32], Vec<[u8; 32]>>,
}

/// `list` if it holds `cap` or more.
fn full<T>(list: Option<&Vec<T>>, cap: usize) -> Option<&Vec<T>> {
    list.filter(|l| l.len() >= cap)
}

/// Takes `id` out of the per-key list `key` of `index` (and the list, when
/// that empties it).
fn unlist<K, Q>(index: &mut HashMap<K, Vec<[u8; 32]>>, key: &Q, id: &[u8; 32])
where
    K: Hash + Eq + Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    if let Some(list) = index.get_mut(key) {
        list.retain(|i| i != id);
        if list.is_empty() {
            index.remove(key);
        }
    }
}

impl Pool {
    /// Adds ceremony `id`, first making room in its budgets by dropping the
    /// oldest ceremonies that stand in the way (expired ones go first). It
    /// never refuses: every budget is bounded and gives way.
    fn insert(
        &mut self,
        id: [u8; 32],
        challenge: [u8; 32],
        purpose: Purpose,
        owner: Owner,
        now: i64,
    ) {
        self.drop_expired(now);
        while let Some(victim) = self.victim(&owner) {
            if self.take(&victim).is_none() {
                self.forget(&victim);
            }
        }
        // Ids are 32 random bytes; should one ever repeat, the older
        // ceremony goes rather than leaving stale index entries behind.
        if self.pending.contains_key(&id) {
            self.take(&id);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        match &owner {
            Owner::Login { addr, username } => {
                self.logins.insert(seq, id);
                self.by_addr
                    .entry(addr.clone())
                    .or_insert_with(|| Vec::with_capacity(1))
                    .push(id);
                self.by_username
                    .entry(username.clone())
                    .or_insert_with(|| Vec::with_capacity(1))
                    .push(id);
            }
            Owner::Session(session) => {
                self.sessions.insert(seq, id);
                self.by_session
                    .entry(*session)
                    .or_insert_with(|| Vec::with_capacity(1))
                    .push(id);
            }
        }
        self.pending.insert(
            id,
            Pending {
                challenge,
                purpose,
                expires_at: now.saturating_add(CEREMONY_TTL_MS),
                seq,
                owner,
            },
        );
    }

    /// The ceremony to drop before `owner` may start one more, if a budget
    /// of its is full: for a login, the username's oldest from this same
    /// address (else the username's oldest), then the address's oldest, then
    /// the oldest login of all; for a session, its oldest, then the oldest
    /// signed-in one of all.
    fn victim(&self, owner: &Owner) -> Option<[u8; 32]> {
        let oldest = |list: &Vec<[u8; 32]>| list.first().copied();
        match owner {
            Owner::Login { addr, username } => {
                let of_name = self.by_username.get(username);
                if let Some(list) = full(of_name, MAX_LOGIN_CEREMONIES_PER_USERNAME) {
                    let mine = list.iter().find(|id| self.asked_from(id, addr));
                    return mine.copied().or_else(|| oldest(list));
                }
                let of_addr = self.by_addr.get(addr);
                if let Some(list) = full(of_addr, MAX_LOGIN_CEREMONIES_PER_ADDRESS) {
                    return oldest(list);
                }
                (self.logins.len() >= MAX_LOGIN_CEREMONIES)
                    .then(|| self.oldest_login())
                    .flatten()
            }
            Owner::Session(session) => {
                let of_session = self.by_session.get(session);
                if let Some(list) = full(of_session, MAX_CEREMONIES_PER_SESSION) {
                    return oldest(list);
                }
                (self.sessions.len() >= MAX_SESSION_CEREMONIES)
                    .then(|| self.oldest_session())
                    .flatten()
            }
        }
    }

    /// Was login ceremony `id` asked from address key `addr`?
    fn asked_from(&self, id: &[u8; 32], addr: &str) -> bool {
        matches!(
            self.pending.get(id).map(|p| &p.owner),
            Some(Owner::Login { addr: from, .. }) if from == addr
        )
    }

    /// Drops expired ceremonies from the old end of each pool. (Issue
    /// order and expiry agree but for concurrent requests' clock readings,
    /// so one may outlive its time by a moment; [`Pool::take`]'s caller
    /// checks the expiry anyway.)
    fn drop_expired(&mut self, now: i64) {
        for pool in [Pool::oldest_login, Pool::oldest_session] {
            while let Some(id) = pool(self) {
                match self.pending.get(&id) {
                    Some(p) if p.expires_at > now => break,
                    Some(_) => {
                        self.take(&id);
                    }
                    None => self.forget(&id),
                }
            }
        }
    }

    fn oldest_login(&self) -> Option<[u8; 32]> {
        self.logins.values().next().copied()
    }

    fn oldest_session(&self) -> Option<[u8; 32]> {
        self.sessions.values().next().copied()
    }

    /// Takes ceremony `id` out of the pool and all its indexes.
    fn take(&mut self, id: &[u8; 32]) -> Option<Pending> {
        let found = self.pending.remove(id)?;
        match &found.owner {
            Owner::Login { addr, username } => {
                self.logins.remove(&found.seq);
                unlist(&mut self.by_addr, addr.as_str(), id);
                unlist(&mut self.by_username, username.as_str(), id);
            }
            Owner::Session(session) => {
                self.sessions.remove(&found.seq);
                unlist(&mut self.by_session, session, id);
            }
        }
        Some(found)
    }

    /// Drops `id` from every index. Never needed: an index names only
    /// pending ceremonies (no change above can stop halfway), but should one
    /// ever not, this keeps the loops above from spinning on it.
    fn forget(&mut self, id: &[u8; 32]) {
        self.logins.retain(|_, i| i != id);
        self.sessions.retain(|_, i| i != id);
        let unlisted = |list: &mut Vec<[u8; 32]>| {
            list.retain(|i| i != id);
            !list.is_empty()
        };
        self.by_addr.retain(|_, list| unlisted(list));
        self.by_username.retain(|_, list| unlisted(list));
        self.by_session.retain(|_, list| unlisted(list));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.len()
    }
}

/// Challenges waiting for their answer, in memory (see the module notes).
pub struct Ceremonies {
    pool: Mutex<Pool>,
    /// Makes the stand-in credential ids of accounts without passkeys (see
    /// [`login_options`]); per process.
    decoy_key: [u8; 32],
}

impl Default for Ceremonies {
    fn default() -> Self {
        let mut decoy_key = [0; 32];
        rand::rngs::OsRng.fill_bytes(&mut decoy_key);
        Self {
            pool: Mutex::new(Pool::default()),
            decoy_key,
        }
    }
}

impl Ceremonies {
    /// Ceremonies whose decoy credential ids come from `decoy_key`: the
    /// deployment's (`Store::shared_secret`), so that every node gives the
    /// same stand-in ids for a name (RFD 0018).
    pub fn with_decoy_key(decoy_key: [u8; 32]) -> Self {
        Self {
            pool: Mutex::new(Pool::default()),
            decoy_key,
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        // A poisoned lock only means another request panicked mid-change;
        // the worst left behind is an index entry that `Pool::forget` drops.
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new challenge for `purpose`, counted against `owner`'s budgets:
    /// its public id and the challenge. Never refused (a full budget drops
    /// its oldest ceremony).
    pub(super) fn start(&self, purpose: Purpose, owner: Owner, now: i64) -> (String, [u8; 32]) {
        let (id, id_hash) = session::new_token();
        let mut challenge = [0; 32];
        rand::rngs::OsRng.fill_bytes(&mut challenge);
        self.pool().insert(id_hash, challenge, purpose, owner, now);
        (id, challenge)
    }

    /// A login ceremony for `username`, asked from `client`.
    pub(super) fn start_login(
        &self,
        username: &str,
        client: IpAddr,
        now: i64,
    ) -> (String, [u8; 32]) {
        self.start(
            Purpose::Login {
                username: username.to_owned(),
            },
            Owner::Login {
                addr: throttle::addr_key(&client.to_string()),
                username: username.to_owned(),
            },
            now,
        )
    }

    /// The challenge of ceremony `id` if it was issued for `purpose` and has
    /// not expired. The ceremony is gone afterwards whatever the answer.
    pub(super) fn finish(&self, id: &str, purpose: &Purpose, now: i64) -> Option<[u8; 32]> {
        if id.is_empty() || id.len() > 128 {
            return None;
        }
        let found = self.pool().take(&session::hash_token(id))?;
        (found.purpose == *purpose && now < found.expires_at).then_some(found.challenge)
    }

    /// Stand-in credential ids for a username with no passkey (or no
    /// account): the same for the same name on every node, so that
    /// the login options do not tell which accounts exist or hold passkeys.
    pub(super) fn decoy_credential(&self, username: &str) -> Vec<u8> {
        let mut hash = Sha256::new();
        hash.update(self.decoy_key);
        hash.update(username.as_bytes());
        hash.finalize().to_vec()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.pool().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceremonies_are_single_use_bound_and_expiring() {
        let c = Ceremonies::default();
        let login = |u: &str| Purpose::Login {
            username: u.to_owned(),
        };
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let (id, challenge) = c.start_login("dana", ip, 1_000);
        assert_eq!(c.finish(&id, &login("dana"), 1_001), Some(challenge));
        assert_eq!(c.finish(&id, &login("dana"), 1_002), None, "used once");

        let (id, _) = c.start_login("dana", ip, 1_000);
        assert_eq!(c.finish(&id, &login("erin"), 1_001), None, "another name");
        assert_eq!(
            c.finish(&id, &login("dana"), 1_001),
            None,
            "burnt by the try"
        );

        let session = Purpose::Register { session: [1; 32] };
        let mine = Owner::Session([1; 32]);
        let (id, _) = c.start(session.clone(), mine.clone(), 1_000);
        assert_eq!(
            c.finish(&id, &Purpose::StepUp { session: [1; 32] }, 1_001),
            None,
            "another purpose"
        );
        let (id, _) = c.start(session.clone(), mine.clone(), 1_000);
        assert_eq!(
            c.finish(&id, &session, 1_000 + CEREMONY_TTL_MS),
            None,
            "expired"
        );
        // A login ceremony answered as a session's, and the reverse.
        let (id, _) = c.start_login("dana", ip, 1_000);
        assert_eq!(c.finish(&id, &session, 1_001), None, "not a session's");
        let (id, _) = c.start(session.clone(), mine, 1_000);
        assert_eq!(c.finish(&id, &login("dana"), 1_001), None, "not a login");
        assert_eq!(c.finish("", &session, 1_000), None);
        assert_eq!(c.finish(&"x".repeat(129), &session, 1_000), None);
        assert_eq!(c.len(), 0);

        assert_eq!(c.decoy_credential("x"), c.decoy_credential("x"));
        assert_ne!(c.decoy_credential("x"), c.decoy_credential("y"));
        assert_ne!(
            Ceremonies::default().decoy_credential("x"),
            c.decoy_credential("x")
        );
    }

    // ------------------------------------------------------------ the budgets

    const T0: i64 = 1_700_000_000_000;

    /// A pool test's ceremony id (and challenge): `n` in its first bytes.
    fn id(n: usize) -> [u8; 32] {
        let mut id = [0xee; 32];
        id[..8].copy_from_slice(&u64::try_from(n).expect("small").to_be_bytes());
        id
    }

    fn login(username: &str) -> Purpose {
        Purpose::Login {
            username: username.to_owned(),
        }
    }

    /// Login ceremony `n` for `username`, asked from `ip`.
    fn ask(pool: &mut Pool, n: usize, ip: &str, username: &str, now: i64) {
        let owner = Owner::Login {
            addr: throttle::addr_key(ip),
            username: username.to_owned(),
        };
        pool.insert(id(n), id(n), login(username), owner, now);
    }

    /// Step-up ceremony `n` of `session`.
    fn step_up(pool: &mut Pool, n: usize, session: u8, now: i64) {
        let purpose = Purpose::StepUp {
            session: [session; 32],
        };
        pool.insert(id(n), id(n), purpose, Owner::Session([session; 32]), now);
    }

    fn waiting(pool: &Pool, ns: impl IntoIterator<Item = usize>) -> Vec<bool> {
        ns.into_iter()
            .map(|n| pool.pending.contains_key(&id(n)))
            .collect()
    }

    /// The `n`th IPv4 address of 10.0.0.0/8.
    fn ipv4(n: usize) -> String {
        std::net::Ipv4Addr::from(0x0a00_0000 + u32::try_from(n).expect("small")).to_string()
    }

    /// Every index names exactly the pending ceremonies, oldest first, and
    /// every budget holds at most its cap.
    fn consistent(pool: &Pool) {
        let is_login = |p: &&Pending| matches!(p.owner, Owner::Login { .. });
        let logins = pool.pending.values().filter(is_login).count();
        assert_eq!(pool.logins.len(), logins);
        assert_eq!(pool.sessions.len(), pool.pending.len() - logins);
        assert!(logins <= MAX_LOGIN_CEREMONIES);
        assert!(pool.sessions.len() <= MAX_SESSION_CEREMONIES);
        for (seq, id) in pool.logins.iter().chain(&pool.sessions) {
            assert_eq!(pool.pending[id].seq, *seq);
        }
        let check = |lists: Vec<(&Vec<[u8; 32]>, usize)>,
                     total: usize,
                     owns: &dyn Fn(&Pending, usize) -> bool| {
            let mut counted = 0;
            for (i, (list, cap)) in lists.iter().enumerate() {
                assert!(
                    !list.is_empty() && list.len() <= *cap,
                    "{} of {cap}",
                    list.len()
                );
                let seqs: Vec<u64> = list.iter().map(|id| pool.pending[id].seq).collect();
                assert!(seqs.is_sorted(), "oldest first: {seqs:?}");
                assert!(list.iter().all(|id| owns(&pool.pending[id], i)));
                counted += list.len();
            }
            assert_eq!(counted, total);
        };
        let addrs: Vec<_> = pool.by_addr.iter().collect();
        check(
            addrs
                .iter()
                .map(|(_, l)| (*l, MAX_LOGIN_CEREMONIES_PER_ADDRESS))
                .collect(),
            logins,
            &|p, i| matches!(&p.owner, Owner::Login { addr, .. } if addr == addrs[i].0),
        );
        let names: Vec<_> = pool.by_username.iter().collect();
        check(
            names
                .iter()
                .map(|(_, l)| (*l, MAX_LOGIN_CEREMONIES_PER_USERNAME))
                .collect(),
            logins,
            &|p, i| matches!(&p.owner, Owner::Login { username, .. } if username == names[i].0),
        );
        let sessions: Vec<_> = pool.by_session.iter().collect();
        check(
            sessions
                .iter()
                .map(|(_, l)| (*l, MAX_CEREMONIES_PER_SESSION))
                .collect(),
            pool.sessions.len(),
            &|p, i| p.owner == Owner::Session(*sessions[i].0),
        );
    }

    #[test]
    fn an_address_over_its_cap_loses_its_own_oldest() {
        let mut pool = Pool::default();
        let cap = MAX_LOGIN_CEREMONIES_PER_ADDRESS;
        for n in 0..cap {
            ask(&mut pool, n, "198.51.100.7", &format!("name{n}"), T0);
        }
        ask(&mut pool, 100, "198.51.100.8", "dana", T0);
        ask(&mut pool, 101, "198.51.100.7", "erin", T0 + 1);
        assert_eq!(
            waiting(&pool, [0, 1, cap - 1, 100, 101]),
            [false, true, true, true, true]
        );
        assert_eq!(pool.len(), cap + 1);
        // Again and again: the address keeps its newest `cap`, the other
        // address keeps its own.
        for n in 200..1_000 {
            ask(&mut pool, n, "198.51.100.7", &format!("name{n}"), T0 + 2);
        }
        assert_eq!(pool.by_addr["addr:198.51.100.7"].len(), cap);
        assert_eq!(
            waiting(&pool, [100, 999 - cap, 1_000 - cap]),
            [true, false, true]
        );
        consistent(&pool);

        // An IPv6 /64 is one address (as for the login throttle); the next
        // /64 is another, and an IPv4-mapped address is its IPv4 address.
        let mut pool = Pool::default();
        for n in 0..=cap {
            ask(
                &mut pool,
                n,
                &format!("2001:db8:1:2::{n:x}"),
                &format!("name{n}"),
                T0,
            );
        }
        ask(&mut pool, 100, "2001:db8:1:3::1", "dana", T0);
        assert_eq!(waiting(&pool, [0, 1, cap, 100]), [false, true, true, true]);
        ask(&mut pool, 200, "192.0.2.1", "x", T0);
        for n in 201..=200 + cap {
            ask(&mut pool, n, "::ffff:192.0.2.1", &format!("name{n}"), T0);
        }
        assert_eq!(waiting(&pool, [200, 201, 200 + cap]), [false, true, true]);
        consistent(&pool);
    }

    #[test]
    fn a_username_over_its_cap_loses_its_oldest_from_the_same_address_first() {
        let mut pool = Pool::default();
        let cap = MAX_LOGIN_CEREMONIES_PER_USERNAME;
        // One client retrying: it loses its own oldest, never the newest.
        for n in 0..=cap {
            ask(&mut pool, n, "192.0.2.1", "dana", T0);
        }
        assert_eq!(waiting(&pool, [0, 1, cap]), [false, true, true]);
        assert_eq!(pool.by_username["dana"].len(), cap);

        // Someone else asking for the same name from one address loses its
        // own ceremonies, not the person's...
        let mut pool = Pool::default();
        ask(&mut pool, 0, "192.0.2.1", "dana", T0);
        for n in 1..100 {
            ask(&mut pool, n, "203.0.113.9", "dana", T0 + 1);
        }
        assert_eq!(
            waiting(&pool, [0, 1, 99 - cap + 1, 99]),
            [true, false, false, true]
        );
        // ...and an address with none for the name takes the name's oldest.
        ask(&mut pool, 100, "203.0.113.10", "dana", T0 + 2);
        assert_eq!(waiting(&pool, [0, 100]), [false, true]);
        // Other names are untouched.
        ask(&mut pool, 200, "192.0.2.1", "erin", T0 + 3);
        for n in 201..210 {
            ask(&mut pool, n, "203.0.113.9", "dana", T0 + 3);
        }
        assert_eq!(waiting(&pool, [200]), [true]);
        consistent(&pool);
    }

    #[test]
    fn a_full_login_pool_gives_way_oldest_first_and_a_new_ceremony_works() {
        let c = Ceremonies::default();
        let now = T0;
        // Many addresses, each under its cap: the pool fills...
        let flood: Vec<String> = (0..MAX_LOGIN_CEREMONIES)
            .map(|n| {
                c.start_login(&format!("name{n}"), ipv4(n).parse().expect("ip"), now)
                    .0
            })
            .collect();
        assert_eq!(c.len(), MAX_LOGIN_CEREMONIES);
        // ...and someone asking now still gets a working ceremony, in place
        // of the oldest one.
        let honest: IpAddr = "192.0.2.1".parse().expect("ip");
        let (id, challenge) = c.start_login("dana", honest, now + 1);
        assert_eq!(c.len(), MAX_LOGIN_CEREMONIES);
        assert_eq!(
            c.finish(&flood[0], &login("name0"), now + 2),
            None,
            "given way"
        );
        assert!(
            c.finish(&flood[1], &login("name1"), now + 2).is_some(),
            "the next oldest waits"
        );
        assert_eq!(c.finish(&id, &login("dana"), now + 2), Some(challenge));

        // The flood goes on (the attacker's addresses keep asking): a
        // person who asks again gets a ceremony that works until the whole
        // pool has turned over after it.
        let (id, challenge) = c.start_login("dana", honest, now + 3);
        for n in 0..MAX_LOGIN_CEREMONIES - 1 {
            c.start_login(&format!("again{n}"), ipv4(n).parse().expect("ip"), now + 4);
        }
        assert_eq!(c.finish(&id, &login("dana"), now + 5), Some(challenge));
        consistent(&c.pool());
    }

    #[test]
    fn signed_in_ceremonies_never_give_way_to_logins() {
        let c = Ceremonies::default();
        let step_up = Purpose::StepUp { session: [7; 32] };
        let before = c.start(step_up.clone(), Owner::Session([7; 32]), T0);
        for n in 0..2 * MAX_LOGIN_CEREMONIES {
            c.start_login(&format!("name{n}"), ipv4(n).parse().expect("ip"), T0);
        }
        assert_eq!(c.len(), MAX_LOGIN_CEREMONIES + 1);
        let register = Purpose::Register { session: [8; 32] };
        let after = c.start(register.clone(), Owner::Session([8; 32]), T0 + 1);
        let approve = Purpose::DeviceApproval {
            session: [9; 32],
            user_code: "BCDF-GHJK".to_owned(),
        };
        let approval = c.start(approve.clone(), Owner::Session([9; 32]), T0 + 1);
        assert_eq!(c.finish(&before.0, &step_up, T0 + 2), Some(before.1));
        assert_eq!(c.finish(&after.0, &register, T0 + 2), Some(after.1));
        assert_eq!(c.finish(&approval.0, &approve, T0 + 2), Some(approval.1));
        assert_eq!(c.len(), MAX_LOGIN_CEREMONIES);
        consistent(&c.pool());
    }

    #[test]
    fn a_session_over_its_cap_loses_its_own_oldest() {
        let mut pool = Pool::default();
        let cap = MAX_CEREMONIES_PER_SESSION;
        step_up(&mut pool, 100, 2, T0);
        for n in 0..=cap {
            step_up(&mut pool, n, 1, T0 + 1);
        }
        assert_eq!(waiting(&pool, [0, 1, cap, 100]), [false, true, true, true]);
        assert_eq!(pool.by_session[&[1; 32]].len(), cap);
        consistent(&pool);

        // All signed-in ceremonies together are capped too (sessions are
        // many only when operators sign in many times): the oldest goes.
        let mut pool = Pool::default();
        for n in 0..MAX_SESSION_CEREMONIES {
            // Each of its own session.
            let session = id(n);
            let purpose = Purpose::StepUp { session };
            pool.insert(id(n), id(n), purpose, Owner::Session(session), T0);
        }
        step_up(&mut pool, 1_000_000, 1, T0 + 1);
        assert_eq!(pool.len(), MAX_SESSION_CEREMONIES);
        assert_eq!(waiting(&pool, [0, 1, 1_000_000]), [false, true, true]);
        consistent(&pool);
    }

    #[test]
    fn expired_ceremonies_leave_first() {
        let mut pool = Pool::default();
        for n in 0..MAX_LOGIN_CEREMONIES_PER_ADDRESS {
            ask(
                &mut pool,
                n,
                "192.0.2.1",
                &format!("name{n}"),
                T0 + i64::try_from(n).expect("small"),
            );
        }
        step_up(&mut pool, 100, 1, T0);
        // Not yet expired: still waiting.
        ask(
            &mut pool,
            200,
            "192.0.2.2",
            "dana",
            T0 + CEREMONY_TTL_MS - 1,
        );
        assert_eq!(pool.len(), MAX_LOGIN_CEREMONIES_PER_ADDRESS + 2);
        // The first two and the step-up have expired when the next is asked.
        ask(
            &mut pool,
            201,
            "192.0.2.3",
            "erin",
            T0 + CEREMONY_TTL_MS + 1,
        );
        assert_eq!(
            waiting(&pool, [0, 1, 2, 100, 200, 201]),
            [false, false, true, false, true, true]
        );
        // Expired ceremonies free their address's budget: nothing waiting
        // is dropped to make room.
        ask(
            &mut pool,
            202,
            "192.0.2.1",
            "name202",
            T0 + CEREMONY_TTL_MS + 1,
        );
        assert_eq!(waiting(&pool, [2, 202]), [true, true]);
        consistent(&pool);
    }

    #[test]
    fn the_worst_case_is_bounded() {
        // The numbers the module notes give, and the memory estimate counts.
        assert_eq!(
            [
                MAX_LOGIN_CEREMONIES,
                MAX_LOGIN_CEREMONIES_PER_ADDRESS,
                MAX_LOGIN_CEREMONIES_PER_USERNAME,
                MAX_SESSION_CEREMONIES,
                MAX_CEREMONIES_PER_SESSION,
            ],
            [8_192, 16, 4, 2_048, 8]
        );
        // Every ceremony from its own /64 for its own longest name, twice
        // the pool over; sessions likewise.
        let mut pool = Pool::default();
        for n in 0..2 * MAX_LOGIN_CEREMONIES {
            let ip = format!("2001:db8:{:x}:{:x}::1", n >> 16, n & 0xffff);
            let name = format!("{n:0>64}");
            ask(&mut pool, n, &ip, &name, T0);
        }
        for n in 0..2 * MAX_SESSION_CEREMONIES {
            let session = id(n);
            let purpose = Purpose::DeviceApproval {
                session,
                user_code: "BCDF-GHJK".to_owned(),
            };
            pool.insert(
                id(1_000_000 + n),
                id(n),
                purpose,
                Owner::Session(session),
                T0,
            );
        }
        assert_eq!(pool.len(), MAX_LOGIN_CEREMONIES + MAX_SESSION_CEREMONIES);
        assert_eq!(pool.by_addr.len(), MAX_LOGIN_CEREMONIES);
        assert_eq!(pool.by_username.len(), MAX_LOGIN_CEREMONIES);
        assert_eq!(pool.by_session.len(), MAX_SESSION_CEREMONIES);
        consistent(&pool);
        // Taking them all leaves nothing behind.
        let ids: Vec<[u8; 32]> = pool.pending.keys().copied().collect();
        for id in ids {
            assert!(pool.take(&id).is_some());
        }
        assert!(pool.logins.is_empty() && pool.sessions.is_empty());
        assert!(
            pool.by_addr.is_empty() && pool.by_username.is_empty() && pool.by_session.is_empty()
        );
    }
}

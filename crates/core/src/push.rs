//! The normalized push: what the webhook puts on the queue and the sync takes off it. It carries
//! only names and commit ids, never a URL, so the sync cannot be sent anywhere by a payload.
//!
//! The same message, with [`MessageKind::FullSync`], asks the sync for a full reconciliation of
//! a repository without a push (`hubsync repos add` queues one for a newly registered
//! repository), so both queues (SQS and SQLite) carry it and keep it in the repository's order.
//!
//! [`MessageKind::Reconcile`] is what the scheduled reconcile ([`crate::reconcile`]) queues for a
//! repository whose default branch is ahead of its cursor: a push of the default branch that no
//! webhook delivered.
//!
//! `hubsync sync --queue` queues a [`SyncRequest`] ([`PushMessage::on_demand`]): the whole tree
//! ([`MessageKind::FullSync`]), from the cursor ([`MessageKind::Recent`]) or the changes since a
//! commit ([`MessageKind::SyncFrom`], with [`PushMessage::from_commit`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use crate::byte_words;
use crate::ids::{CommitId, DeliveryId, RepoRef};

/// The Git host that sent the push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    BitbucketDataCenter,
}

/// How a ref moved, as Bitbucket Data Center reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RefChangeType {
    Add,
    Update,
    Delete,
}

impl RefChangeType {
    /// The type as written in the JSON.
    fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }
}

/// One ref moved by the push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefChange {
    /// Full ref name: `refs/heads/main`, `refs/tags/v1`.
    pub ref_id: RefName,
    #[serde(rename = "type")]
    pub change_type: RefChangeType,
    pub from_hash: CommitId,
    pub to_hash: CommitId,
}

/// A ref's full name (`refs/heads/main`), as [`ShortText`]: a delivery may list 1,000 changes,
/// and a `String` each was a thousand allocations and frees on the webhook's hot path.
pub type RefName = ShortText;

/// Text held inline when it is short, as nearly every ref name and actor name is, so that reading
/// a delivery does not allocate for each. Reads (`Deref` to `str`), compares (with another text or
/// a `&str`), prints and (de)serializes as the `str` it holds, so the queued JSON is unchanged;
/// built from a `&str` or a `String`.
#[derive(Clone)]
pub struct ShortText(RefRepr);

/// The longest name held inline.
const INLINE_REF: usize = 38;

#[derive(Clone)]
enum RefRepr {
    /// The first `len` bytes are the name (copied whole from a `str`), the others zeros.
    Inline {
        len: u8,
        bytes: [u8; INLINE_REF],
    },
    /// [`RefRepr::Inline`] for a name known to need no escape in JSON (no `"`, `\` or control
    /// character), as the reader that found it knew ([`ShortText::from_unescaped_json_text`]),
    /// so that the queued message's writer need not look ([`push_plain_change`]).
    InlinePlain {
        len: u8,
        bytes: [u8; INLINE_REF],
    },
    Heap(Box<str>),
}

impl ShortText {
    pub fn new(name: &str) -> Self {
        let len = name.len();
        if len <= INLINE_REF {
            let mut bytes = [0u8; INLINE_REF];
            bytes[..len].copy_from_slice(name.as_bytes());
            Self(RefRepr::Inline { len: len as u8, bytes })
        } else {
            Self(RefRepr::Heap(name.into()))
        }
    }

    /// The name written as `bytes`, if they are UTF-8. A short ASCII name (nearly every one) is
    /// checked and copied eight bytes at a time, inline, without a call: byte by byte, this was
    /// a sixth of reading a 1,000-change delivery's changes. Always inlined: called, the name
    /// came back through memory, which the webhook's shape reader then read back in pieces of
    /// other sizes (4 % of a 1,000-change delivery's time).
    #[inline(always)]
    pub fn from_utf8(bytes: &[u8]) -> Option<Self> {
        Self::from_utf8_noting::<false>(bytes)
    }

    /// [`ShortText::from_utf8`] for the text of a valid JSON string without escapes, which holds
    /// no `"`, `\\` or control byte (the webhook's readers know it as they find the string's
    /// end): the name is noted as needing no escape without a test of its own.
    #[inline(always)]
    pub(crate) fn from_unescaped_json_text(bytes: &[u8]) -> Option<Self> {
        debug_assert!(!crate::json_text::needs_escape(bytes));
        Self::from_utf8_noting::<true>(bytes)
    }

    /// [`ShortText::from_utf8`], a short name noted as needing no escape in JSON when the caller
    /// says it is `UNESCAPED`. Names read otherwise are not tested here: the writer tests them
    /// ([`push_plain_change`]), and a test here cost the actor's names too, which it writes
    /// through another path.
    #[inline(always)]
    fn from_utf8_noting<const UNESCAPED: bool>(bytes: &[u8]) -> Option<Self> {
        let len = bytes.len();
        if (8..=INLINE_REF).contains(&len) {
            // Whole words from the start, then one word ending at the last byte (overlapping
            // the one before): every byte is tested and copied, none twice differently.
            let mut inline = [0u8; INLINE_REF];
            let mut high = 0u64;
            let mut at = 0;
            while at + 8 < len {
                high |= copy_word(bytes, &mut inline, at);
                at += 8;
            }
            high |= copy_word(bytes, &mut inline, len - 8);
            if high & byte_words::HIGH == 0 {
                return Some(Self::inline::<UNESCAPED>(len, inline));
            }
        } else if len < 8 && bytes.is_ascii() {
            let mut inline = [0u8; INLINE_REF];
            inline[..len].copy_from_slice(bytes);
            return Some(Self::inline::<UNESCAPED>(len, inline));
        }
        std::str::from_utf8(bytes).ok().map(Self::new)
    }

    /// The first `len` bytes of `bytes` held inline (UTF-8: see [`ShortText::as_str`]); noted as
    /// needing no escape when `UNESCAPED`.
    #[inline(always)]
    fn inline<const UNESCAPED: bool>(len: usize, bytes: [u8; INLINE_REF]) -> Self {
        let len = len as u8;
        Self(match UNESCAPED {
            true => RefRepr::InlinePlain { len, bytes },
            false => RefRepr::Inline { len, bytes },
        })
    }

    /// The name's length in bytes, read without making the `str` (no bounds check of the inline
    /// bytes): the queued message's writer sums it for every change to size its buffer.
    fn byte_len(&self) -> usize {
        match &self.0 {
            RefRepr::Inline { len, .. } | RefRepr::InlinePlain { len, .. } => usize::from(*len),
            RefRepr::Heap(name) => name.len(),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            RefRepr::Inline { len, bytes } | RefRepr::InlinePlain { len, bytes } => {
                let bytes = &bytes[..usize::from(*len)];
                debug_assert!(std::str::from_utf8(bytes).is_ok());
                // SAFETY: `RefRepr` is private and an inline name (either kind) is only ever
                // made by `new` (the bytes of a `str`, copied whole) or `from_utf8` (bytes
                // checked ASCII), so the first `len` bytes are always valid UTF-8. Checking them
                // again on every read cost the webhook a call per change writing a 1,000-change
                // message.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            RefRepr::Heap(name) => name,
        }
    }
}

/// Copies the eight bytes of `from` at `at` into `to` at `at`; the word, for its high bits.
#[inline(always)]
fn copy_word(from: &[u8], to: &mut [u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&from[at..at + 8]);
    to[at..at + 8].copy_from_slice(&word);
    u64::from_le_bytes(word)
}

impl std::ops::Deref for ShortText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for ShortText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ShortText {}

impl PartialEq<&str> for ShortText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<&str> for ShortText {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for ShortText {
    fn from(name: String) -> Self {
        if name.len() <= INLINE_REF {
            Self::new(&name)
        } else {
            Self(RefRepr::Heap(name.into_boxed_str()))
        }
    }
}

impl std::fmt::Debug for ShortText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for ShortText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ShortText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ShortText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ShortText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<ShortText, E> {
                Ok(ShortText::new(name))
            }
            fn visit_string<E: serde::de::Error>(self, name: String) -> Result<ShortText, E> {
                Ok(ShortText::from(name))
            }
        }
        d.deserialize_string(Visitor)
    }
}

/// Who pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub name: Option<ShortText>,
    pub display_name: Option<ShortText>,
    pub email_address: Option<ShortText>,
}

/// What a queued message asks of the sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageKind {
    /// A webhook delivery: sync if it moved the default branch.
    #[default]
    Push,
    /// A request to reconcile the repository's whole default branch now, whatever was pushed.
    FullSync,
    /// Queued by the reconcile ([`crate::reconcile`]): the default branch is ahead of the cursor
    /// (a delivery was lost). It carries the default branch's move from the cursor to the head,
    /// so the sync treats it as a push of the default branch: from the cursor to the head, not a
    /// full reconciliation.
    Reconcile,
    /// Queued by a sync that reached its deadline ([`crate::deadline`]) after recording how far
    /// it got: the next slice of the same sync. It is synced whatever the branch did meanwhile.
    Continuation,
    /// `hubsync sync --recent --queue`: the changes from the cursor to the head now, as a push of
    /// the default branch would bring them (a repository without a cursor is reconciled fully).
    Recent,
    /// `hubsync sync --from COMMIT --queue`: the changes from [`PushMessage::from_commit`] to the
    /// head, applied over what the store holds (see [`SyncRequest::From`]).
    SyncFrom,
}

impl MessageKind {
    /// Whether this is a push (the kind left out of the JSON, so pushes serialize as before).
    pub fn is_push(&self) -> bool {
        *self == Self::Push
    }

    /// The kind as written in the JSON.
    fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::FullSync => "full-sync",
            Self::Reconcile => "reconcile",
            Self::Continuation => "continuation",
            Self::Recent => "recent",
            Self::SyncFrom => "sync-from",
        }
    }
}

/// One accepted push, as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushMessage {
    /// A push, or a full sync request; absent (a push) in messages queued by earlier versions.
    #[serde(default, skip_serializing_if = "MessageKind::is_push")]
    pub kind: MessageKind,
    pub provider: Provider,
    pub delivery_id: DeliveryId,
    pub repo: RepoRef,
    /// Bitbucket's numeric repository id (stable across renames).
    pub repository_id: Option<u64>,
    pub changes: Vec<RefChange>,
    pub actor: Actor,
    pub received_at: DateTime<Utc>,
    /// The commit a [`MessageKind::SyncFrom`] request applies the changes from; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_commit: Option<CommitId>,
}

/// Appends `at` as chrono serializes a `DateTime<Utc>` (its `Debug` text: RFC 3339 with `Z`, the
/// fraction in 3, 6 or 9 digits, only as long as needed, a leap second as `:60`), without
/// chrono's formatter, which costs a tenth of a one-change webhook; a year outside 0..=9999 is
/// left to it. The `to_json` tests hold the two together.
fn push_instant(out: &mut String, at: &DateTime<Utc>) {
    use chrono::{Datelike, Timelike};

    // The fields read from the naive instant once (each accessor of a `DateTime` converts it
    // again), written into a fixed buffer and appended in one copy.
    let naive = at.naive_utc();
    let year = naive.year();
    if !(0..=9999).contains(&year) {
        out.push_str(&format!("{at:?}"));
        return;
    }
    let (second, nano) = match naive.nanosecond() {
        n if n >= 1_000_000_000 => (naive.second() + 1, n - 1_000_000_000),
        n => (naive.second(), n),
    };
    let year = year as u32;
    let mut text = *b"0000-00-00T00:00:00.000000000Z";
    for (at, n) in [
        (0, year / 100),
        (2, year % 100),
        (5, naive.month()),
        (8, naive.day()),
        (11, naive.hour()),
        (14, naive.minute()),
        (17, second),
    ] {
        text[at] = b'0' + (n / 10 % 10) as u8;
        text[at + 1] = b'0' + (n % 10) as u8;
    }
    let (mut fraction, digits) = if nano == 0 {
        (0, 0)
    } else if nano % 1_000_000 == 0 {
        (nano / 1_000_000, 3)
    } else if nano % 1_000 == 0 {
        (nano / 1_000, 6)
    } else {
        (nano, 9)
    };
    for place in (20..20 + digits).rev() {
        text[place] = b'0' + (fraction % 10) as u8;
        fraction /= 10;
    }
    let len = if digits == 0 { 19 } else { 20 + digits };
    text[len] = b'Z';
    // Only ASCII digits and punctuation were written.
    out.push_str(std::str::from_utf8(&text[..=len]).unwrap_or_default());
}

/// One change of the queued message (a delivery may hold 1,000): in one window with one capacity
/// check when it can be ([`push_plain_change`]), piece by piece otherwise.
#[inline]
fn push_change(out: &mut String, change: &RefChange) {
    if !push_plain_change(out, change) {
        push_any_change(out, change);
    }
}

/// The most bytes [`push_plain_change`] writes: the opening text, a whole inline name, the
/// longest type's text, two SHA-1 ids and the texts between and after them.
const PLAIN_CHANGE_MAX: usize = 10 + INLINE_REF + 30 + 40 + 12 + 40 + 2;

/// The fixed texts of a change in the queued message, the same for both of its writers
/// ([`push_plain_change`], [`push_any_change`]): before the ref name, between the ids, after the
/// last id.
const CHANGE_OPEN: &str = "{\"refId\":\"";
const CHANGE_BETWEEN_IDS: &str = "\",\"toHash\":\"";
const CHANGE_CLOSE: &str = "\"}";

/// The text from the end of the ref name to the start of the first id, for each type, padded to
/// one length, 30 bytes (the padding is overwritten or cut), with its length.
fn type_text(change_type: RefChangeType) -> (&'static str, usize) {
    match change_type {
        RefChangeType::Add => ("\",\"type\":\"ADD\",\"fromHash\":\"   ", 27),
        RefChangeType::Update => ("\",\"type\":\"UPDATE\",\"fromHash\":\"", 30),
        RefChangeType::Delete => ("\",\"type\":\"DELETE\",\"fromHash\":\"", 30),
    }
}

/// Appends the change when its name is held inline and needs no escape and both ids are SHA-1
/// (nearly every change); `false`, having written nothing, otherwise. The change is written
/// after the end of `out` in pieces of fixed sizes at moving offsets, each piece written whole
/// (a name's unused inline bytes, a short type's padding) and the excess overwritten by the next
/// piece or cut at the end, with one capacity check: seven appends, each checking the capacity
/// and storing the length, were about 150 instructions a change. A name read as plain
/// ([`RefRepr::InlinePlain`], as the webhook's are) is not searched for escapes again.
#[inline(always)]
fn push_plain_change(out: &mut String, change: &RefChange) -> bool {
    let (len, name, plain) = match &change.ref_id.0 {
        RefRepr::InlinePlain { len, bytes } => (len, bytes, true),
        RefRepr::Inline { len, bytes } => (len, bytes, false),
        RefRepr::Heap(_) => return false,
    };
    let (Ok(from), Ok(to)) = (
        <&[u8; 40]>::try_from(change.from_hash.as_bytes()),
        <&[u8; 40]>::try_from(change.to_hash.as_bytes()),
    ) else {
        return false;
    };
    let len = usize::from(*len);
    if len > INLINE_REF || (!plain && crate::json_text::needs_escape(&name[..len])) {
        return false;
    }
    let (type_text, type_len) = type_text(change.change_type);
    // SAFETY: the bytes of `out` are changed only by the writes below, each of which puts a
    // piece (a fixed ASCII text, the ids' ASCII hex digits, the inline name: its first `len`
    // bytes UTF-8, see `ShortText::as_str`, the others zeros) at the end of the one before, so
    // a later piece never cuts a character of an earlier one, and by the final `truncate` to the
    // end of the last piece, so that `out` then holds its text and exactly the pieces' texts one
    // after another. At any step in between, a panic included, it holds whole pieces and zeros.
    // All are UTF-8. `from_utf8_unchecked` on a buffer, then one more copy, cost more.
    let out = unsafe { out.as_mut_vec() };
    let start = out.len();
    out.resize(start + PLAIN_CHANGE_MAX, 0);
    // A window of a size known when compiling, so that the writes below (at most `len`, 38, past
    // the fixed sizes) need no bounds checks.
    let Some(text) = out[start..].first_chunk_mut::<PLAIN_CHANGE_MAX>() else {
        out.truncate(start);
        return false;
    };
    text[..10].copy_from_slice(CHANGE_OPEN.as_bytes());
    text[10..10 + INLINE_REF].copy_from_slice(name);
    let mut at = 10 + len;
    text[at..at + 30].copy_from_slice(type_text.as_bytes());
    at += type_len;
    text[at..at + 40].copy_from_slice(from);
    at += 40;
    text[at..at + 12].copy_from_slice(CHANGE_BETWEEN_IDS.as_bytes());
    at += 12;
    text[at..at + 40].copy_from_slice(to);
    at += 40;
    text[at..at + 2].copy_from_slice(CHANGE_CLOSE.as_bytes());
    at += 2;
    out.truncate(start + at);
    debug_assert!(std::str::from_utf8(&out[start..]).is_ok());
    true
}

/// [`push_change`] for any change (a name held on the heap or needing escapes, a SHA-256 id),
/// piece by piece, with the fixed texts [`push_plain_change`] writes.
fn push_any_change(out: &mut String, change: &RefChange) {
    out.push_str(CHANGE_OPEN);
    crate::json_text::push_escaped(out, &change.ref_id);
    let (type_text, type_len) = type_text(change.change_type);
    out.push_str(&type_text[..type_len]);
    push_commit(out, &change.from_hash);
    out.push_str(CHANGE_BETWEEN_IDS);
    push_commit(out, &change.to_hash);
    out.push_str(CHANGE_CLOSE);
}

/// Appends the digits of `commit`: a SHA-1 id as a copy of a length known when compiling, which
/// is inlined, instead of a call to `memcpy` (2,000 of them for a 1,000-change message).
#[inline]
fn push_commit(out: &mut String, commit: &CommitId) {
    let digits = commit.as_str();
    match digits.get(..40) {
        Some(sha1) if digits.len() == 40 => out.push_str(sha1),
        _ => out.push_str(digits),
    }
}

/// What a sync on demand (`hubsync sync`, at once or queued) is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRequest {
    /// Reconcile the whole tree at the head: every model fetched, anything else removed.
    Full,
    /// The changes from the cursor to the head, as a push would bring them.
    Recent,
    /// The changes from this commit (an ancestor of the head) to the head, fetched at the head
    /// and applied over what the store holds: nothing goes back to the commit, models changed
    /// before it are left as they are. The cursor's own changes are applied too, so the cursor
    /// can move to the head.
    From(CommitId),
}

impl SyncRequest {
    /// The request a queued message makes, if it is one (a push or a reconcile is not).
    pub fn of(message: &PushMessage) -> Option<Self> {
        match message.kind {
            MessageKind::Push | MessageKind::Reconcile | MessageKind::Continuation => None,
            MessageKind::FullSync => Some(Self::Full),
            MessageKind::Recent => Some(Self::Recent),
            // Without its commit (never written so), the safe reading is the whole tree.
            MessageKind::SyncFrom => Some(message.from_commit.clone().map_or(Self::Full, Self::From)),
        }
    }

    fn kind(&self) -> MessageKind {
        match self {
            Self::Full => MessageKind::FullSync,
            Self::Recent => MessageKind::Recent,
            Self::From(_) => MessageKind::SyncFrom,
        }
    }
}

impl std::fmt::Display for SyncRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full => f.write_str("full sync"),
            Self::Recent => f.write_str("sync from the cursor"),
            Self::From(commit) => write!(f, "sync from {}", commit.short()),
        }
    }
}

impl PushMessage {
    /// What the reconcile queues for `repo` when its default branch (`branch_ref`, at `head`) is
    /// ahead of its cursor (`None`: never synced): the branch's move from the cursor to the head.
    /// Its deduplication id is derived from the repository and the head, so reconciles that find
    /// the same head again queue it once (within the queue's deduplication window).
    pub fn reconcile(
        repo: RepoRef,
        branch_ref: &str,
        head: &CommitId,
        cursor: Option<&CommitId>,
        requested_at: DateTime<Utc>,
    ) -> Self {
        let (change_type, from_hash) = match cursor {
            Some(cursor) => (RefChangeType::Update, cursor.clone()),
            None => (RefChangeType::Add, CommitId::zero()),
        };
        let repo_digest = hex::encode(Sha256::digest(repo.to_string().as_bytes()));
        // 10 + 40 or 64 + 1 + 24 characters: within SQS's 128.
        let delivery_id = DeliveryId::parse(&format!("reconcile-{head}-{}", &repo_digest[..24]))
            .expect("a reconcile id is printable ASCII within 128 characters");
        Self {
            changes: vec![RefChange {
                ref_id: RefName::new(branch_ref),
                change_type,
                from_hash,
                to_hash: head.clone(),
            }],
            ..Self::request(MessageKind::Reconcile, delivery_id, repo, requested_at, None)
        }
    }

    /// `request` for `repo`, to queue (`hubsync sync --queue`), in the repository's order like a
    /// push. Its deduplication id is derived from the repository, the request and the minute it
    /// is made in: the same request made twice within a minute (a double click, a retried
    /// command) is queued once; a different request, or the same one a minute later, is not
    /// held back.
    pub fn on_demand(repo: RepoRef, request: &SyncRequest, requested_at: DateTime<Utc>) -> Self {
        let from = match request {
            SyncRequest::From(commit) => commit.as_str(),
            _ => "",
        };
        let minute = requested_at.timestamp().div_euclid(60);
        let seed = format!("{repo}\n{:?}\n{from}\n{minute}", request.kind());
        let digest = hex::encode(Sha256::digest(seed.as_bytes()));
        let delivery_id = DeliveryId::parse(&format!("sync-{}", &digest[..40]))
            .expect("a sync request id is printable ASCII within 128 characters");
        let from_commit = match request {
            SyncRequest::From(commit) => Some(commit.clone()),
            _ => None,
        };
        Self::request(request.kind(), delivery_id, repo, requested_at, from_commit)
    }

    /// A request to reconcile `repo` fully, queued in the repository's order like a push. It moves
    /// no ref; `request_id` is its deduplication id (unique per request).
    pub fn full_sync(repo: RepoRef, request_id: DeliveryId, requested_at: DateTime<Utc>) -> Self {
        Self::request(MessageKind::FullSync, request_id, repo, requested_at, None)
    }

    /// The continuation of the sync `run` of `repo` towards `head` that stopped after `after`
    /// (see [`MessageKind::Continuation`], [`crate::ports::SyncResume::run`]). It moves no ref;
    /// its deduplication id is derived from the repository, the head, the sync and the resume
    /// point, so a slice queues its continuation once, and another sync of the same head that
    /// stops at the same path queues its own.
    pub fn continuation(repo: RepoRef, head: &CommitId, run: &str, after: &str, requested_at: DateTime<Utc>) -> Self {
        let digest = hex::encode(Sha256::digest(format!("{repo}\n{run}\n{after}").as_bytes()));
        // 9 + 40 or 64 + 1 + 24 characters: within SQS's 128.
        let delivery_id = DeliveryId::parse(&format!("continue-{head}-{}", &digest[..24]))
            .expect("a continuation id is printable ASCII within 128 characters");
        Self::request(MessageKind::Continuation, delivery_id, repo, requested_at, None)
    }

    /// A message hubsync or a person asks for, not a webhook's push: no actor, no repository id,
    /// no change.
    fn request(
        kind: MessageKind,
        delivery_id: DeliveryId,
        repo: RepoRef,
        requested_at: DateTime<Utc>,
        from_commit: Option<CommitId>,
    ) -> Self {
        Self {
            kind,
            provider: Provider::BitbucketDataCenter,
            delivery_id,
            repo,
            repository_id: None,
            changes: Vec::new(),
            actor: Actor::default(),
            received_at: requested_at,
            from_commit,
        }
    }

    /// Whether any change of this push moved `ref_id`.
    pub fn touches(&self, ref_id: &str) -> bool {
        self.changes.iter().any(|c| c.ref_id == ref_id)
    }

    /// The message as queued: exactly the text `serde_json::to_string` gives (and
    /// `Deserialize` reads), written by hand into a buffer sized once, since the webhook builds
    /// it on its hot path for up to 1,000 changes. Commit ids need no escaping; every other
    /// string is escaped as serde_json escapes it. Both queues (SQS, SQLite) send this.
    pub fn to_json(&self) -> String {
        use crate::json_text::{push_repo, push_str, push_u64};

        let optional_len = |s: &Option<ShortText>| s.as_ref().map_or(4, |s| s.len() + 2);
        let changes_len: usize = self
            .changes
            .iter()
            .map(|c| {
                49 + c.change_type.as_str().len()
                    + c.ref_id.byte_len()
                    + c.from_hash.as_str().len()
                    + c.to_hash.as_str().len()
            })
            .sum();
        let capacity = 240
            + self.delivery_id.as_str().len()
            + self.repo.project().len()
            + self.repo.slug().len()
            + changes_len
            + optional_len(&self.actor.name)
            + optional_len(&self.actor.display_name)
            + optional_len(&self.actor.email_address)
            + self.from_commit.as_ref().map_or(0, |c| c.as_str().len())
            // Room for `push_plain_change` to write its whole window after the last change
            // (it cuts the excess), which would otherwise grow the buffer.
            + PLAIN_CHANGE_MAX;
        let mut out = String::with_capacity(capacity);
        let optional = |out: &mut String, s: &Option<ShortText>| match s {
            Some(s) => push_str(out, s),
            None => out.push_str("null"),
        };

        out.push('{');
        if !self.kind.is_push() {
            out.push_str("\"kind\":\"");
            out.push_str(self.kind.as_str());
            out.push_str("\",");
        }
        out.push_str("\"provider\":\"");
        out.push_str(match self.provider {
            Provider::BitbucketDataCenter => "bitbucket-data-center",
        });
        out.push_str("\",\"deliveryId\":");
        push_str(&mut out, self.delivery_id.as_str());
        out.push_str(",\"repo\":");
        push_repo(&mut out, &self.repo);
        out.push_str(",\"repositoryId\":");
        match self.repository_id {
            Some(id) => push_u64(&mut out, id),
            None => out.push_str("null"),
        }
        out.push_str(",\"changes\":[");
        for (i, change) in self.changes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_change(&mut out, change);
        }
        out.push_str("],\"actor\":{\"name\":");
        optional(&mut out, &self.actor.name);
        out.push_str(",\"displayName\":");
        optional(&mut out, &self.actor.display_name);
        out.push_str(",\"emailAddress\":");
        optional(&mut out, &self.actor.email_address);
        out.push_str("},\"receivedAt\":\"");
        push_instant(&mut out, &self.received_at);
        out.push('"');
        if let Some(commit) = &self.from_commit {
            out.push_str(",\"fromCommit\":\"");
            out.push_str(commit.as_str());
            out.push('"');
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_serializes_without_a_kind_and_reads_back_as_a_push() {
        let request = PushMessage::full_sync(
            RepoRef::parse("DATA/models").unwrap(),
            DeliveryId::parse("sync-1").unwrap(),
            Utc::now(),
        );
        let push = PushMessage {
            kind: MessageKind::Push,
            ..request.clone()
        };

        let push_json = serde_json::to_value(&push).unwrap();
        let request_json = serde_json::to_value(&request).unwrap();

        assert!(push_json.get("kind").is_none(), "{push_json}");
        assert_eq!(request_json["kind"], "full-sync");
        let read: PushMessage = serde_json::from_value(push_json).unwrap();
        assert_eq!(read.kind, MessageKind::Push);
        let read: PushMessage = serde_json::from_value(request_json).unwrap();
        assert_eq!(read, request);
    }
}

#[cfg(test)]
mod continuation_tests {
    use super::*;

    const HEAD: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn continuations_are_deduplicated_on_repository_head_sync_and_resume_point() {
        let a = RepoRef::parse("DATA/models").unwrap();
        let b = RepoRef::parse("DATA/other").unwrap();
        let head = CommitId::parse(HEAD).unwrap();

        let first = PushMessage::continuation(a.clone(), &head, "run1", "m/0100.json", Utc::now());
        let again = PushMessage::continuation(a.clone(), &head, "run1", "m/0100.json", Utc::now());
        let further = PushMessage::continuation(a.clone(), &head, "run1", "m/0200.json", Utc::now());
        let other_sync = PushMessage::continuation(a, &head, "run2", "m/0100.json", Utc::now());
        let other = PushMessage::continuation(b, &head, "run1", "m/0100.json", Utc::now());

        assert_eq!(first.delivery_id, again.delivery_id);
        assert_ne!(first.delivery_id, further.delivery_id);
        assert_ne!(first.delivery_id, other_sync.delivery_id);
        assert_ne!(first.delivery_id, other.delivery_id);
        assert_eq!(first.kind, MessageKind::Continuation);
        let json = serde_json::to_value(&first).unwrap();
        assert_eq!(json["kind"], "continuation");
        assert_eq!(serde_json::from_value::<PushMessage>(json).unwrap(), first);
    }
}

#[cfg(test)]
mod reconcile_tests {
    use super::*;

    const MAIN: &str = "refs/heads/main";

    fn head(id: &str) -> CommitId {
        CommitId::parse(id).unwrap()
    }

    const CURSOR: &str = "1111111111111111111111111111111111111111";
    const HEAD: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn a_push_serializes_without_a_kind_and_a_reconcile_reads_back_as_queued() {
        let repo = RepoRef::parse("DATA/models").unwrap();
        let cursor = CommitId::parse(CURSOR).unwrap();
        let reconcile = PushMessage::reconcile(repo, MAIN, &head(HEAD), Some(&cursor), Utc::now());
        let push = PushMessage {
            kind: MessageKind::Push,
            ..reconcile.clone()
        };

        let push_json = serde_json::to_value(&push).unwrap();
        let reconcile_json = serde_json::to_value(&reconcile).unwrap();

        assert!(push_json.get("kind").is_none(), "{push_json}");
        assert_eq!(reconcile_json["kind"], "reconcile");
        let read: PushMessage = serde_json::from_value(push_json).unwrap();
        assert_eq!(read.kind, MessageKind::Push);
        let read: PushMessage = serde_json::from_value(reconcile_json).unwrap();
        assert_eq!(read, reconcile);
    }

    #[test]
    fn a_reconcile_moves_the_default_branch_from_the_cursor_to_the_head() {
        let repo = RepoRef::parse("DATA/models").unwrap();
        let cursor = CommitId::parse(CURSOR).unwrap();

        let message = PushMessage::reconcile(repo, MAIN, &head(HEAD), Some(&cursor), Utc::now());

        assert!(message.touches("refs/heads/main"));
        assert_eq!(message.changes[0].from_hash, cursor);
        assert_eq!(message.changes[0].to_hash.as_str(), HEAD);
        assert_eq!(message.changes[0].change_type, RefChangeType::Update);
    }

    #[test]
    fn a_reconcile_of_a_repository_never_synced_starts_from_no_commit() {
        let repo = RepoRef::parse("DATA/models").unwrap();

        let message = PushMessage::reconcile(repo, MAIN, &head(HEAD), None, Utc::now());

        assert!(message.changes[0].from_hash.is_zero());
        assert_eq!(message.changes[0].change_type, RefChangeType::Add);
    }

    #[test]
    fn reconciles_of_one_head_share_a_deduplication_id_and_other_repositories_do_not() {
        let a = RepoRef::parse("DATA/models").unwrap();
        let b = RepoRef::parse("DATA/other").unwrap();

        let first = PushMessage::reconcile(a.clone(), MAIN, &head(HEAD), None, Utc::now());
        let again = PushMessage::reconcile(
            a,
            MAIN,
            &head(HEAD),
            Some(&CommitId::parse(CURSOR).unwrap()),
            Utc::now(),
        );
        let other = PushMessage::reconcile(b, MAIN, &head(HEAD), None, Utc::now());

        assert_eq!(first.delivery_id, again.delivery_id);
        assert_ne!(first.delivery_id, other.delivery_id);
        assert!(first.delivery_id.as_str().len() <= 128);
    }
}

#[cfg(test)]
mod on_demand_tests {
    use chrono::TimeZone;

    use super::*;

    const COMMIT: &str = "3333333333333333333333333333333333333333";

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn every_sync_request_reads_back_from_the_queue_as_the_same_request() {
        let repo = RepoRef::parse("DATA/models").unwrap();
        for request in [
            SyncRequest::Full,
            SyncRequest::Recent,
            SyncRequest::From(CommitId::parse(COMMIT).unwrap()),
        ] {
            let message = PushMessage::on_demand(repo.clone(), &request, at(0));

            let read: PushMessage = serde_json::from_str(&serde_json::to_string(&message).unwrap()).unwrap();

            assert_eq!(SyncRequest::of(&read), Some(request));
            assert_eq!(read, message);
        }
    }

    #[test]
    fn a_message_queued_before_sync_requests_existed_still_reads_as_it_did() {
        let old = r#"{"kind":"full-sync","provider":"bitbucket-data-center","deliveryId":"sync-1",
            "repo":"DATA/models","repositoryId":null,"changes":[],"actor":{},
            "receivedAt":"2026-11-28T12:00:00Z"}"#;

        let read: PushMessage = serde_json::from_str(old).unwrap();

        assert_eq!(read.from_commit, None);
        assert_eq!(SyncRequest::of(&read), Some(SyncRequest::Full));
    }

    #[test]
    fn the_same_request_within_a_minute_shares_its_deduplication_id_and_others_do_not() {
        let repo = RepoRef::parse("DATA/models").unwrap();
        let id =
            |request: &SyncRequest, seconds| PushMessage::on_demand(repo.clone(), request, at(seconds)).delivery_id;
        let from = SyncRequest::From(CommitId::parse(COMMIT).unwrap());

        assert_eq!(id(&SyncRequest::Full, 0), id(&SyncRequest::Full, 59));
        assert_ne!(id(&SyncRequest::Full, 0), id(&SyncRequest::Full, 60));
        assert_ne!(id(&SyncRequest::Full, 0), id(&SyncRequest::Recent, 0));
        assert_ne!(id(&SyncRequest::Recent, 0), id(&from, 0));
        assert_ne!(
            id(&from, 0),
            PushMessage::on_demand(RepoRef::parse("DATA/other").unwrap(), &from, at(0)).delivery_id
        );
    }
}

#[cfg(test)]
mod to_json_tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    const HASHES: [&str; 3] = [
        "ecddabb624f6f5ba43816f5926e580a5f680a932",
        "0000000000000000000000000000000000000000",
        "178864a7d521b6f5e720b386b2c2b0ef8563e0dc178864a7d521b6f5e720b386",
    ];

    fn text() -> impl Strategy<Value = String> {
        "(\\PC|[\\x00-\\x1f\\x7f\"\\\\/]){0,12}"
    }

    fn commit() -> impl Strategy<Value = CommitId> {
        prop::sample::select(HASHES.to_vec()).prop_map(|h| CommitId::parse(h).unwrap())
    }

    fn kind() -> impl Strategy<Value = MessageKind> {
        prop::sample::select(vec![
            MessageKind::Push,
            MessageKind::FullSync,
            MessageKind::Reconcile,
            MessageKind::Continuation,
            MessageKind::Recent,
            MessageKind::SyncFrom,
        ])
    }

    /// Ref names: any text, or printable ASCII (with or without a `"` or `\\`) of every length
    /// around the inline limit; built as a `str` is, or from bytes as the readers build them:
    /// a name without an escape as the webhook's shape reader does, noted as needing none.
    fn ref_name() -> impl Strategy<Value = RefName> {
        let name = prop_oneof![text(), "[ -~]{0,40}", "[a-z/._-]{0,40}"];
        (name, any::<bool>()).prop_map(|(name, from_bytes)| {
            let bytes = name.as_bytes();
            let read = match crate::json_text::needs_escape(bytes) {
                false => RefName::from_unescaped_json_text(bytes),
                true => RefName::from_utf8(bytes),
            };
            match read {
                Some(read) if from_bytes => read,
                _ => name.into(),
            }
        })
    }

    fn change() -> impl Strategy<Value = RefChange> {
        let ty = prop::sample::select(vec![RefChangeType::Add, RefChangeType::Update, RefChangeType::Delete]);
        (ref_name(), ty, commit(), commit()).prop_map(|(ref_id, change_type, from_hash, to_hash)| RefChange {
            ref_id,
            change_type,
            from_hash,
            to_hash,
        })
    }

    fn message() -> impl Strategy<Value = PushMessage> {
        let segment = "[a-zA-Z0-9~\"\\\\é日._-]{1,12}";
        // Names held inline and names too long for that.
        let name = || prop::option::of("(\\PC|[\\x00-\\x1f\\x7f\"\\\\/]){0,48}".prop_map(ShortText::from));
        let actor = (name(), name(), name());
        // Any instant chrono can write, nanoseconds and leap seconds included.
        let at = (-200_000_000_000i64..200_000_000_000, 0u32..2_000_000_000)
            .prop_filter_map("not an instant", |(s, n)| Utc.timestamp_opt(s, n).single());
        (
            (kind(), "[!-~]{1,40}", segment, segment, prop::option::of(any::<u64>())),
            (
                prop::collection::vec(change(), 0..4),
                actor,
                at,
                prop::option::of(commit()),
            ),
        )
            .prop_filter_map(
                "not a repository",
                |(
                    (kind, id, project, slug, repository_id),
                    (changes, (name, display_name, email_address), at, from),
                )| {
                    Some(PushMessage {
                        kind,
                        provider: Provider::BitbucketDataCenter,
                        delivery_id: DeliveryId::parse(&id).ok()?,
                        repo: RepoRef::new(&project, &slug).ok()?,
                        repository_id,
                        changes,
                        actor: Actor {
                            name,
                            display_name,
                            email_address,
                        },
                        received_at: at,
                        from_commit: from,
                    })
                },
            )
    }

    proptest! {
        #[test]
        fn the_written_message_is_what_serde_json_writes_and_reads_back_the_same(message in message()) {
            let written = message.to_json();

            prop_assert_eq!(&written, &serde_json::to_string(&message).unwrap());
            prop_assert_eq!(serde_json::from_str::<PushMessage>(&written).unwrap(), message);
        }
    }

    proptest! {
        #[test]
        fn ref_names_from_bytes_are_the_utf8_text_of_the_bytes(
            text in "[ -~]{0,40}",
            byte in prop::sample::select(vec![0x80u8, 0xc3, 0xa9, 0xff, 0x7f, 0x00]),
            at in any::<prop::sample::Index>(),
            edit in any::<bool>(),
        ) {
            // Arrange: printable ASCII of every length around the inline limit, or the same with
            // one byte anywhere replaced by a byte beyond ASCII (or by DEL or NUL, still ASCII).
            let mut bytes = text.into_bytes();
            if edit && !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }

            // Act
            let name = RefName::from_utf8(&bytes);

            // Assert: exactly the UTF-8 text of the bytes, or nothing.
            let expected = std::str::from_utf8(&bytes).ok();
            prop_assert_eq!(name.as_deref(), expected);
        }
    }

    #[test]
    fn instants_are_written_as_chrono_serializes_them() {
        let leap = Utc.timestamp_opt(1_483_228_799, 1_500_000_000).unwrap();
        for at in [
            leap,
            Utc.timestamp_opt(0, 0).unwrap(),
            Utc.timestamp_opt(1_764_324_930, 120_000_000).unwrap(),
            Utc.timestamp_opt(1_764_324_930, 123_456_000).unwrap(),
            Utc.timestamp_opt(1_764_324_930, 7).unwrap(),
            Utc.timestamp_opt(-62_198_755_200, 0).unwrap(),
            Utc.timestamp_opt(253_402_300_800, 0).unwrap(),
        ] {
            let mut out = String::from("\"");
            push_instant(&mut out, &at);
            out.push('"');
            assert_eq!(out, serde_json::to_string(&at).unwrap());
        }
    }

    #[test]
    fn a_thousand_change_push_fits_the_buffer_sized_for_it() {
        let hash = CommitId::parse(HASHES[0]).unwrap();
        let mut push = PushMessage::full_sync(
            RepoRef::parse("DATA/models").unwrap(),
            DeliveryId::parse("8d2f6f3c").unwrap(),
            Utc.timestamp_opt(1_764_324_930, 123_456_789).unwrap(),
        );
        push.kind = MessageKind::Push;
        push.actor.name = Some("jdoe".into());
        push.changes = (0..1000)
            .map(|i| RefChange {
                ref_id: format!("refs/heads/b{i}").into(),
                change_type: RefChangeType::Update,
                from_hash: hash.clone(),
                to_hash: hash.clone(),
            })
            .collect();

        let written = push.to_json();

        assert_eq!(written, serde_json::to_string(&push).unwrap());
        assert!(
            written.capacity() - written.len() < 512,
            "{} of {}",
            written.len(),
            written.capacity()
        );
    }
}

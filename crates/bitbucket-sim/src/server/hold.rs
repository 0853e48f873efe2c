//! Holding a request open: a test asks for the next request matching a predicate to wait inside
//! the simulator until it says so ([`Simulator::hold_next`](super::Simulator::hold_next)), so two
//! clients can be interleaved deterministically (writer A blocked inside a fetch while writer B
//! runs to completion) without sleeping.

use std::sync::Arc;

use tokio::sync::watch;

/// The request line a hold is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path and query string exactly as received (still percent-encoded).
    pub path_and_query: String,
}

type Matcher = Box<dyn Fn(&RequestLine) -> bool + Send + Sync>;

/// A hold not yet taken by a request.
pub(crate) struct PendingHold {
    matcher: Matcher,
    reached: watch::Sender<bool>,
    released: watch::Receiver<bool>,
}

impl std::fmt::Debug for PendingHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingHold").finish_non_exhaustive()
    }
}

impl PendingHold {
    pub(crate) fn matches(&self, line: &RequestLine) -> bool {
        (self.matcher)(line)
    }

    /// Signals that the request arrived, then waits until the test releases it (or drops the
    /// [`Hold`]).
    pub(crate) async fn wait(mut self) {
        let _ = self.reached.send(true);
        let _ = self.released.wait_for(|released| *released).await;
    }
}

/// The test's side of a held request. Dropping it releases the request.
#[derive(Debug)]
pub struct Hold {
    reached: watch::Receiver<bool>,
    release: Arc<watch::Sender<bool>>,
}

impl Hold {
    pub(crate) fn new(matcher: impl Fn(&RequestLine) -> bool + Send + Sync + 'static) -> (Self, PendingHold) {
        let (reached_tx, reached_rx) = watch::channel(false);
        let (release_tx, release_rx) = watch::channel(false);
        let pending = PendingHold {
            matcher: Box::new(matcher),
            reached: reached_tx,
            released: release_rx,
        };
        let hold = Self {
            reached: reached_rx,
            release: Arc::new(release_tx),
        };
        (hold, pending)
    }

    /// Resolves once a matching request has arrived and is being held.
    pub async fn reached(&self) {
        let mut reached = self.reached.clone();
        let _ = reached.wait_for(|reached| *reached).await;
    }

    /// Lets the held request (or the next matching one, if none arrived yet) be answered.
    pub fn release(&self) {
        let _ = self.release.send(true);
    }

    /// Resolves once the hold has been released (by [`Hold::release`] on any clone).
    pub async fn released(&self) {
        let mut released = self.release.subscribe();
        let _ = released.wait_for(|released| *released).await;
    }
}

impl Clone for Hold {
    fn clone(&self) -> Self {
        Self {
            reached: self.reached.clone(),
            release: Arc::clone(&self.release),
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // The last handle gone: nobody can release the request any more, so let it through.
        if Arc::strong_count(&self.release) == 1 {
            let _ = self.release.send(true);
        }
    }
}

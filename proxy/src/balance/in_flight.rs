//! In-flight counting per endpoint, which least-request picking reads.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Member;

/// Counts one request, connection or flow on an endpoint while it lives.
pub(crate) struct InFlight(Arc<Member>);

impl InFlight {
    /// Counts one more in flight on `member`.
    pub(crate) fn new(member: Arc<Member>) -> Self {
        member.state.active.fetch_add(1, Ordering::Relaxed);
        Self(member)
    }

    /// The endpoint.
    pub(crate) fn member(&self) -> &Member {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.state.active.fetch_sub(1, Ordering::Relaxed);
    }
}

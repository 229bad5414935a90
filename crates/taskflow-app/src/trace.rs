//! The trace of the work being done: set around each HTTP request, read where events are made.

use std::future::Future;

use taskflow_core::trace::Traceparent;

tokio::task_local! {
    static CURRENT: Traceparent;
}

/// Runs `f` as part of `trace`: the events it writes carry it.
pub async fn scope<F: Future>(trace: Traceparent, f: F) -> F::Output {
    CURRENT.scope(trace, f).await
}

/// The `traceparent` of the work being done, where there is one.
pub fn current() -> Option<String> {
    CURRENT.try_with(Traceparent::header).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_current_trace_is_the_scopes() {
        assert_eq!(current(), None);
        let t = Traceparent::root();
        let inside = scope(t.clone(), async { current() }).await;
        assert_eq!(inside, Some(t.header()));
    }
}

//! W3C trace context (`traceparent`): read from a request, carried in the events it writes
//! (the CloudEvents `traceparent` extension), named in every consumer's log lines.

/// A `traceparent` (version 00): the trace, the span that is the parent of what follows, and
/// the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traceparent {
    trace_id: String,
    span_id: String,
    flags: u8,
}

impl Traceparent {
    /// Reads a `traceparent` header; `None` when it is not a valid one (a new trace starts).
    /// A later version is read by its first four fields, as the specification asks.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.next().is_none())
            && hex(trace_id, 32)
            && !zero(trace_id)
            && hex(span_id, 16)
            && !zero(span_id)
            && hex(flags, 2);
        valid.then(|| Self {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            flags: u8::from_str_radix(flags, 16).unwrap_or(0),
        })
    }

    /// A new trace, sampled.
    pub fn root() -> Self {
        Self {
            trace_id: format!("{:032x}", nonzero::<u128>()),
            span_id: format!("{:016x}", nonzero::<u64>()),
            flags: 1,
        }
    }

    /// A span of this trace whose parent is this one.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: format!("{:016x}", nonzero::<u64>()),
            flags: self.flags,
        }
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// This span's id.
    pub fn span_id(&self) -> &str {
        &self.span_id
    }

    /// Whether the trace is recorded (the `sampled` flag): spans of a trace the caller does
    /// not record are not exported either.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The header value.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

/// A random value that is not zero (an all-zero id is invalid).
fn nonzero<T: PartialEq + Default>() -> T
where
    rand::distr::StandardUniform: rand::distr::Distribution<T>,
{
    loop {
        let v: T = rand::random();
        if v != T::default() {
            return v;
        }
    }
}

/// The trace id of a `traceparent` header, for log lines; empty when it is not one.
pub fn trace_id_of(header: Option<&str>) -> String {
    header
        .and_then(Traceparent::parse)
        .map(|t| t.trace_id)
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_header_is_read_and_written_back_the_same() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = Traceparent::parse(h).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id(), "00f067aa0ba902b7");
        assert!(t.sampled());
        assert_eq!(t.header(), h);
        let unsampled = Traceparent::parse(&h.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
        assert!(!unsampled.child().sampled(), "a child keeps the flags");
    }

    #[test]
    fn malformed_headers_are_refused() {
        for h in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(Traceparent::parse(h), None, "{h:?}");
        }
        // A later version may carry more fields.
        assert!(
            Traceparent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more")
                .is_some()
        );
    }

    #[test]
    fn a_child_keeps_the_trace_and_gets_a_span_of_its_own() {
        let t = Traceparent::root();
        let c = t.child();
        assert_eq!(c.trace_id(), t.trace_id());
        assert_ne!(c.span_id(), t.span_id());
        assert_ne!(c.header(), t.header());
        assert_eq!(Traceparent::parse(&c.header()), Some(c));
        assert_ne!(Traceparent::root().trace_id(), t.trace_id());
    }
}

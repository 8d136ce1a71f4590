//! Trace context carried in each job: the scheduler's span context, as a W3C `traceparent`,
//! stored with the job, so the execution's span is a child of the span that scheduled it, also
//! when another process runs it. With the `opentelemetry` feature, through
//! `tracing-opentelemetry`; without it, jobs carry what they were given and nothing is read.

/// The longest trace context a job carries; a `traceparent` is 55 characters.
pub const MAX_TRACE_CONTEXT_BYTES: usize = 256;

/// Checks a trace context as every store does before storing it: at most
/// [`MAX_TRACE_CONTEXT_BYTES`] of printable ASCII, else `InvalidInput`.
pub(crate) fn validate(trace_context: &str) -> crate::Result<()> {
    if trace_context.len() > MAX_TRACE_CONTEXT_BYTES
        || !trace_context.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(crate::Error::invalid_input(format!(
            "a trace context is at most {MAX_TRACE_CONTEXT_BYTES} bytes of printable ASCII"
        )));
    }
    Ok(())
}

/// The current span's context as a `traceparent`, when there is a sampled or recorded one.
#[cfg(feature = "opentelemetry")]
pub(crate) fn current() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Without the feature, nothing is carried.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn current() -> Option<String> {
    None
}

/// Makes `span` a child of the context `traceparent` names; one that cannot be read is ignored.
#[cfg(feature = "opentelemetry")]
pub(crate) fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let Some(parts) = traceparent.map(|t| t.split('-').collect::<Vec<_>>()) else {
        return;
    };
    let [version, trace_id, span_id, flags] = parts.as_slice() else {
        return;
    };
    if *version != "00" || trace_id.len() != 32 || span_id.len() != 16 || flags.len() != 2 {
        return;
    }
    let (Ok(trace_id), Ok(span_id), Ok(flags)) = (
        TraceId::from_hex(trace_id),
        SpanId::from_hex(span_id),
        u8::from_str_radix(flags, 16),
    ) else {
        return;
    };
    let remote = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    if remote.is_valid() {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// Without the feature, the execution's span has no parent from the job.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn set_parent(_span: &tracing::Span, _traceparent: Option<&str>) {}

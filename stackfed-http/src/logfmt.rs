//! The text log line without colours, written straight: the same text as
//! `tracing-subscriber`'s default format (`Format<Full, SystemTime>` with ANSI off) at a
//! fraction of its cost.
//!
//! The default format styles every field name, `=` and the target through
//! `nu_ansi_term` even when the style is plain, and formats the timestamp, integers and
//! floats through `core::fmt` with padding; on the proxy's access line that was about
//! 15,000 instructions per request. [`PlainFormat`] writes the same bytes:
//!
//! ```text
//! 2026-12-01T03:01:24.123456Z  INFO access: GET /v1/AUTH_test/c/o 200 request_id=tx… method=GET path=/v1/AUTH_test/c/o status=200 bytes=1024 duration_ms=0.4 client="127.0.0.1:40000" complete=true
//! ```
//!
//! (timestamp, level right-aligned in five columns, target, the message with control
//! characters escaped as the default format escapes them, then the fields `name=value`
//! in order, values as `Debug` prints them). An event it does not write itself — inside
//! a span, from the `log` crate, or for a writer with colours — goes to the default
//! format, so every line reads as before.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, FormatEvent, FormatFields, Full, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// The event format; see the [module docs](self).
#[derive(Debug, Default)]
pub struct PlainFormat {
    full: Format<Full, SystemTime>,
}

impl PlainFormat {
    /// The format, falling back to the default one where it does not write the line.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S, N> FormatEvent<S, N> for PlainFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if writer.has_ansi_escapes()
            || ctx.event_scope().is_some()
            || meta.fields().iter().any(|f| f.name().starts_with("log."))
        {
            return self.full.format_event(ctx, writer, event);
        }
        timestamp(&mut writer, std::time::SystemTime::now())?;
        writer.write_str(match *meta.level() {
            Level::TRACE => "TRACE ",
            Level::DEBUG => "DEBUG ",
            Level::INFO => " INFO ",
            Level::WARN => " WARN ",
            Level::ERROR => "ERROR ",
        })?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let sanitize = writer.sanitizes_ansi_escapes();
        let mut fields = Fields {
            writer: &mut writer,
            sanitize,
            empty: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// The default format's timestamp (`SystemTime`'s, RFC 3339 in UTC with microseconds),
/// then a space.
fn timestamp(w: &mut Writer<'_>, now: std::time::SystemTime) -> fmt::Result {
    // humantime writes the same text for the years 1970 to 9999 and refuses others.
    if write!(w, "{}", humantime::format_rfc3339_micros(now)).is_err() {
        SystemTime.format_time(w)?;
    }
    w.write_char(' ')
}

/// The default visitor's output (`DefaultVisitor`, colours off).
struct Fields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    sanitize: bool,
    empty: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    /// Starts a field: the separating space, then `name=` (none for the message).
    fn start(&mut self, field: &Field) -> Result<bool, fmt::Error> {
        if self.empty {
            self.empty = false;
        } else {
            self.writer.write_char(' ')?;
        }
        let name = field.name();
        if name == "message" {
            return Ok(true);
        }
        self.writer
            .write_str(name.strip_prefix("r#").unwrap_or(name))?;
        self.writer.write_char('=')?;
        Ok(false)
    }

    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Self, bool) -> fmt::Result) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = self
            .start(field)
            .and_then(|message| value(&mut *self, message));
    }

    /// A message is written escaped (as the default format's `EscapeGuard` does).
    fn message(&mut self, value: fmt::Arguments<'_>) -> fmt::Result {
        if self.sanitize {
            Escaping(&mut *self.writer).write_fmt(value)
        } else {
            self.writer.write_fmt(value)
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |f, message| {
            if message {
                f.message(format_args!("{value:?}"))
            } else {
                write!(f.writer, "{value:?}")
            }
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |f, message| {
            if message {
                f.message(format_args!("{value}"))
            } else if value
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
            {
                // `Debug` of a string of printable ASCII: the string in quotes.
                f.writer.write_char('"')?;
                f.writer.write_str(value)?;
                f.writer.write_char('"')
            } else {
                write!(f.writer, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |f, message| {
            if message {
                f.message(format_args!("{value}"))
            } else {
                f.writer.write_str(itoa::Buffer::new().format(value))
            }
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |f, message| {
            if message {
                f.message(format_args!("{value}"))
            } else {
                f.writer.write_str(itoa::Buffer::new().format(value))
            }
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |f, message| {
            let text = if value { "true" } else { "false" };
            if message {
                f.message(format_args!("{text}"))
            } else {
                f.writer.write_str(text)
            }
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |f, message| {
            if message {
                f.message(format_args!("{value:?}"))
            } else {
                write_f64(f.writer, value)
            }
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // As the default visitor: the error, and its sources as a list, all escaped.
        let sanitize = self.sanitize;
        match value.source() {
            Some(source) => self.record_debug(
                field,
                &format_args!(
                    "{} {}.sources={}",
                    Guard(value, sanitize),
                    field.name(),
                    Sources(source, sanitize)
                ),
            ),
            None => self.record_debug(field, &format_args!("{}", Guard(value, sanitize))),
        }
    }
}

/// `Debug` of an `f64` (what the default visitor writes), without `core::fmt`'s float
/// printing for a value of whole tenths such as a duration in milliseconds rounded to
/// 0.1.
fn write_f64(w: &mut Writer<'_>, value: f64) -> fmt::Result {
    if value.is_sign_positive() && value < 1e12 {
        let tenths = (value * 10.0).round();
        // `Debug` prints the shortest text that reads back as the same value: for a value
        // that is exactly the double nearest `tenths / 10` (and well below 2^53 / 10,
        // where whole tenths are far apart), that text is `whole.tenth`.
        if tenths / 10.0 == value {
            let tenths = tenths as u64;
            w.write_str(itoa::Buffer::new().format(tenths / 10))?;
            w.write_char('.')?;
            return w.write_char(char::from(b'0' + (tenths % 10) as u8));
        }
    }
    write!(w, "{value:?}")
}

/// The default format's escaping of control characters a terminal would act on.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // C1 controls (U+0080 to U+009F) are 0xC2 0x80..0x9F in UTF-8.
        if !s
            .bytes()
            .any(|b| matches!(b, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f | 0xc2))
        {
            return self.0.write_str(s);
        }
        for ch in s.chars() {
            match ch {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                ch if ('\u{80}'..='\u{9f}').contains(&ch) => {
                    write!(self.0, "\\u{{{:x}}}", ch as u32)?
                }
                ch => self.0.write_char(ch)?,
            }
        }
        Ok(())
    }
}

/// An error's text, escaped when `1` (the default format's `EscapeGuard` for `Display`).
struct Guard<'a>(&'a (dyn std::error::Error + 'static), bool);

impl fmt::Display for Guard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 {
            let mut buf = String::new();
            write!(buf, "{}", self.0)?;
            let mut out = String::new();
            let mut w = Writer::new(&mut out);
            Escaping(&mut w).write_str(&buf)?;
            f.write_str(&out)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Debug for Guard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An error and its sources as a list (the default format's `ErrorSourceList`).
struct Sources<'a>(&'a (dyn std::error::Error + 'static), bool);

impl fmt::Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut at = Some(self.0);
        while let Some(e) = at {
            list.entry(&Guard(e, self.1));
            at = e.source();
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    /// Lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    impl Lines {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
        }
    }

    #[derive(Debug)]
    struct Failed(&'static str, Option<Box<Failed>>);

    impl fmt::Display for Failed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Failed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    /// Events of every shape the servers log (and some they do not), each written by
    /// the default format and by ours.
    fn events() {
        let path = "/v1/AUTH_test/c/o";
        let method = http::Method::GET;
        for duration in [
            0.0, 0.1, 0.4, 1.0, 12.3, 999.9, 1234.5, 1.25, 1e-7, 3e15, -2.5,
        ] {
            tracing::info!(
                target: "access",
                request_id = %"tx0123456789abcdef0123-0068f1a2b3",
                method = %method,
                path = %path,
                status = 200u16,
                bytes = 1024u64,
                duration_ms = duration,
                client = "127.0.0.1:40000",
                complete = true,
                "{} {} {}",
                method,
                path,
                200,
            );
        }
        tracing::info!(client = "[::1]:8080", quoted = "a \"b\" \\ é\t", "x");
        tracing::warn!(error = %"cluster down", attempt = -3i64, "retrying\x1b[31m red \u{85}");
        tracing::error!(r#type = "raw", flag = false, big = u128::MAX, "bad");
        tracing::debug!("debug only");
        tracing::info!(message = "message \x07 as a str");
        tracing::info!(n = 5u64);
        let inner = Failed("disk full", None);
        let outer = Failed("write failed", Some(Box::new(Failed("disk full", None))));
        tracing::warn!(error = &inner as &(dyn std::error::Error + 'static), "one");
        tracing::warn!(error = &outer as &(dyn std::error::Error + 'static), "two");
        let span = tracing::info_span!("conn", peer = "x");
        span.in_scope(|| tracing::info!(status = 1u64, "inside a span"));
    }

    fn write_with(
        format: impl FormatEvent<
                tracing_subscriber::Registry,
                tracing_subscriber::fmt::format::DefaultFields,
            > + Send
            + Sync
            + 'static,
    ) -> String {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(Level::DEBUG)
            .with_writer(lines.clone())
            .event_format(format)
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        lines.take()
    }

    /// Splits a line into its timestamp and the rest.
    fn split(line: &str) -> (&str, &str) {
        line.split_at(line.find(' ').unwrap())
    }

    #[test]
    fn writes_the_default_formats_text() {
        let before = write_with(Format::default().with_timer(SystemTime));
        let ours = write_with(PlainFormat::new());
        let after = write_with(Format::default().with_timer(SystemTime));
        let (before, ours, after): (Vec<_>, Vec<_>, Vec<_>) = (
            before.lines().collect(),
            ours.lines().collect(),
            after.lines().collect(),
        );
        assert_eq!(ours.len(), before.len());
        assert!(ours.len() > 15, "{ours:?}");
        for ((b, o), a) in before.iter().zip(&ours).zip(&after) {
            let ((tb, rb), (to, ro), (ta, _)) = (split(b), split(o), split(a));
            assert_eq!(ro, rb, "line after the timestamp");
            // Timestamps of the same shape compare as text as they compare in time.
            assert_eq!(
                (to.len(), to.as_bytes()[10]),
                (tb.len(), b'T'),
                "{to} vs {tb}"
            );
            assert!(tb <= to && to <= ta, "{tb} <= {to} <= {ta}");
        }
        assert!(ours[0].ends_with(
            " INFO access: GET /v1/AUTH_test/c/o 200 request_id=tx0123456789abcdef0123-0068f1a2b3 \
             method=GET path=/v1/AUTH_test/c/o status=200 bytes=1024 duration_ms=0.0 \
             client=\"127.0.0.1:40000\" complete=true"
        ), "{}", ours[0]);
    }

    #[test]
    fn whole_tenths_as_debug_prints_them() {
        let mut text = String::new();
        let mut probe = |v: f64| {
            text.clear();
            write_f64(&mut Writer::new(&mut text), v).unwrap();
            assert_eq!(text, format!("{v:?}"), "{v}");
        };
        for t in 0..200_000u64 {
            probe(t as f64 / 10.0);
        }
        for v in [
            0.05,
            0.15,
            1e11 + 0.1,
            999_999_999_999.9,
            1e12,
            1e15,
            0.1 + 0.2,
            1e-300,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            -0.0,
            -1.5,
        ] {
            probe(v);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let t = seed % 10_000_000_000_000;
            probe(t as f64 / 10.0);
            probe(f64::from_bits(seed));
        }
    }
}

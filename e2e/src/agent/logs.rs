//! Container logs, kept as a container runtime keeps them for the kubelet:
//! one record per line, `<RFC 3339 time> <stdout|stderr> <F|P> <text>`,
//! where `P` marks a fragment of a line longer than [`MAX_LINE`] (or the
//! last, unterminated one) and `F` a line's end. The kubelet endpoint reads
//! them back with `kubectl logs` options: tail, since, timestamps, stream,
//! byte limit and follow.

use std::io::SeekFrom;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, Stream as FuturesStream};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tracing::{debug, warn};

/// Longest record body; longer lines are split into `P` fragments.
pub const MAX_LINE: usize = 16 * 1024;
/// How often a followed log is polled for appended records.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
const READ_BLOCK: usize = 32 * 1024;

/// A container's output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// Copies one output stream of a container into its log file, a record per
/// line, until the stream closes (the process exited). The file is opened
/// for appending; each batch of records is one write, so the two streams of
/// a container can share the file.
pub async fn record<R: AsyncRead + Unpin>(stream: Stream, mut reader: R, mut file: File) {
    let mut pending: Vec<u8> = Vec::new();
    let mut block = vec![0u8; READ_BLOCK];
    loop {
        let read = match reader.read(&mut block).await {
            Ok(read) => read,
            Err(err) => {
                debug!(stream = stream.as_str(), error = %err, "container output closed");
                0
            }
        };
        let time = Timestamp::now().to_string();
        let mut out = Vec::new();
        if read == 0 {
            if !pending.is_empty() {
                push_record(&mut out, &time, stream, true, &pending);
            }
        } else {
            pending.extend_from_slice(&block[..read]);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                let mut line = &pending[start..start + end];
                while line.len() > MAX_LINE {
                    push_record(&mut out, &time, stream, true, &line[..MAX_LINE]);
                    line = &line[MAX_LINE..];
                }
                push_record(&mut out, &time, stream, false, line);
                start += end + 1;
            }
            pending.drain(..start);
            while pending.len() >= MAX_LINE {
                push_record(&mut out, &time, stream, true, &pending[..MAX_LINE]);
                pending.drain(..MAX_LINE);
            }
        }
        if !out.is_empty() {
            let written = match file.write_all(&out).await {
                Ok(()) => file.flush().await,
                Err(err) => Err(err),
            };
            if let Err(err) = written {
                warn!(stream = stream.as_str(), error = %err, "cannot write the container log");
            }
        }
        if read == 0 {
            return;
        }
    }
}

fn push_record(out: &mut Vec<u8>, time: &str, stream: Stream, partial: bool, text: &[u8]) {
    out.extend_from_slice(time.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// One parsed record.
struct Record<'a> {
    time_text: &'a [u8],
    time: Timestamp,
    stream: Stream,
    partial: bool,
    text: &'a [u8],
}

fn parse(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time_text = parts.next()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    let time = std::str::from_utf8(time_text).ok()?.parse().ok()?;
    Some(Record {
        time_text,
        time,
        stream,
        partial,
        text: parts.next().unwrap_or_default(),
    })
}

/// The `PodLogOptions` the kubelet endpoint honours, from its query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    /// Only the last lines (records) of the file.
    pub tail_lines: Option<u64>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
    /// Only records written at or after this time (`sinceTime`, or now
    /// minus `sinceSeconds`).
    pub since: Option<Timestamp>,
    /// Prefix each record with its time, as `kubectl logs --timestamps`.
    pub timestamps: bool,
    /// Only this stream (`stream=Stdout|Stderr`); both when `None`.
    pub stream: Option<Stream>,
    /// `previous`: there is one log per container across restarts, so the
    /// previous instance's output is in the same file as the current one's.
    pub previous: bool,
}

/// Why a query is refused (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid log query: {0}")]
pub struct QueryError(pub String);

impl LogOptions {
    /// Parses `follow`, `tailLines` (and the older `tail`), `limitBytes`,
    /// `sinceSeconds`, `sinceTime`, `timestamps`, `previous` and `stream`;
    /// other parameters are ignored.
    pub fn from_query(query: &str) -> Result<Self, QueryError> {
        let mut options = Self::default();
        let mut since_seconds = None;
        let mut since_time = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            let number = || {
                value
                    .parse::<i64>()
                    .map_err(|_| QueryError(format!("{key}={value:?} is not a number")))
            };
            match key {
                "follow" => options.follow = parse_bool(key, &value)?,
                "timestamps" => options.timestamps = parse_bool(key, &value)?,
                "previous" => options.previous = parse_bool(key, &value)?,
                "tailLines" => options.tail_lines = Some(non_negative(key, number()?)?),
                "tail" if value == "all" => options.tail_lines = None,
                "tail" => options.tail_lines = Some(non_negative(key, number()?)?),
                "limitBytes" => {
                    let limit = number()?;
                    if limit < 1 {
                        return Err(QueryError("limitBytes must be at least 1".into()));
                    }
                    options.limit_bytes = Some(non_negative(key, limit)?);
                }
                "sinceSeconds" => {
                    let seconds = number()?;
                    if seconds < 1 {
                        return Err(QueryError("sinceSeconds must be at least 1".into()));
                    }
                    since_seconds = Some(seconds);
                }
                "sinceTime" => {
                    since_time = Some(value.parse::<Timestamp>().map_err(|err| {
                        QueryError(format!("sinceTime={value:?} is not RFC 3339: {err}"))
                    })?);
                }
                "stream" => {
                    options.stream = match value.as_str() {
                        "" | "All" => None,
                        "Stdout" => Some(Stream::Stdout),
                        "Stderr" => Some(Stream::Stderr),
                        other => return Err(QueryError(format!("invalid stream type {other:?}"))),
                    }
                }
                _ => {}
            }
        }
        options.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err(QueryError(
                    "at most one of sinceTime or sinceSeconds may be specified".into(),
                ));
            }
            (Some(seconds), None) => Some(
                Timestamp::now()
                    .saturating_sub(SignedDuration::from_secs(seconds))
                    .unwrap_or(Timestamp::MIN),
            ),
            (None, time) => time,
        };
        Ok(options)
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, QueryError> {
    match value {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(QueryError(format!("{key}={other:?} is not a boolean"))),
    }
}

fn non_negative(key: &str, value: i64) -> Result<u64, QueryError> {
    u64::try_from(value).map_err(|_| QueryError(format!("{key} must not be negative")))
}

/// Decodes `%XX` escapes and `+` (a space), as Go's `url.Values` encodes.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// While following: is more output still to come (the container runs)?
pub type FollowWhile = Box<dyn FnMut() -> BoxFuture<'static, bool> + Send>;

struct Reader {
    file: File,
    /// Bytes read after the last complete record.
    pending: Vec<u8>,
    options: LogOptions,
    remaining: Option<u64>,
    follow: Option<FollowWhile>,
    /// Following ended: read what is left, then stop.
    draining: bool,
    done: bool,
}

/// The log as the kubelet serves it: from the start (or the tail's first
/// line), filtered and formatted by `options`; with `follow`, it goes on
/// with appended records while `follow_while` holds, then ends after a last
/// read. The stream ends too when the consumer drops it.
pub async fn read(
    mut file: File,
    options: LogOptions,
    follow_while: FollowWhile,
) -> std::io::Result<impl FuturesStream<Item = std::io::Result<Bytes>> + Send + 'static> {
    let len = file.metadata().await?.len();
    let start = match options.tail_lines {
        Some(lines) => tail_start(&mut file, len, lines).await?,
        None => 0,
    };
    file.seek(SeekFrom::Start(start)).await?;
    let reader = Reader {
        file,
        pending: Vec::new(),
        remaining: options.limit_bytes,
        follow: options.follow.then_some(follow_while),
        options,
        draining: false,
        done: false,
    };
    Ok(stream::unfold(reader, |mut reader| async move {
        let chunk = reader.next_chunk().await?;
        Some((chunk, reader))
    }))
}

impl Reader {
    async fn next_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        let mut block = vec![0u8; READ_BLOCK];
        loop {
            if self.done {
                return None;
            }
            let read = match self.file.read(&mut block).await {
                Ok(read) => read,
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            };
            if read > 0 {
                self.pending.extend_from_slice(&block[..read]);
                let Some(last) = self.pending.iter().rposition(|b| *b == b'\n') else {
                    continue;
                };
                let complete: Vec<u8> = self.pending.drain(..=last).collect();
                let mut out = Vec::new();
                for line in complete[..complete.len() - 1].split(|b| *b == b'\n') {
                    self.render(line, true, &mut out);
                }
                if let Some(chunk) = self.limit(out) {
                    return Some(Ok(chunk));
                }
                continue;
            }
            if !self.draining
                && let Some(follow_while) = self.follow.as_mut()
            {
                if follow_while().await {
                    tokio::time::sleep(FOLLOW_POLL).await;
                } else {
                    self.draining = true;
                }
                continue;
            }
            self.done = true;
            let rest = std::mem::take(&mut self.pending);
            let mut out = Vec::new();
            if !rest.is_empty() {
                self.render(&rest, false, &mut out);
            }
            return self.limit(out).map(Ok);
        }
    }

    /// Appends one line of the file (without its `\n`) as the client sees it.
    fn render(&self, line: &[u8], terminated: bool, out: &mut Vec<u8>) {
        let Some(record) = parse(line) else {
            // Not a record (a log from before records): the line as it is.
            out.extend_from_slice(line);
            if terminated {
                out.push(b'\n');
            }
            return;
        };
        if self.options.since.is_some_and(|since| record.time < since)
            || self
                .options
                .stream
                .is_some_and(|only| only != record.stream)
        {
            return;
        }
        if self.options.timestamps {
            out.extend_from_slice(record.time_text);
            out.push(b' ');
        }
        out.extend_from_slice(record.text);
        if !record.partial {
            out.push(b'\n');
        }
    }

    /// Applies `limitBytes`; `None` when there is nothing to send.
    fn limit(&mut self, mut out: Vec<u8>) -> Option<Bytes> {
        if let Some(remaining) = self.remaining.as_mut() {
            let len = u64::try_from(out.len()).unwrap_or(u64::MAX);
            if len >= *remaining {
                out.truncate(usize::try_from(*remaining).unwrap_or(usize::MAX));
                *remaining = 0;
                self.done = true;
            } else {
                *remaining -= len;
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

/// The offset of the first of the last `lines` lines of a file `len` long.
async fn tail_start(file: &mut File, len: u64, lines: u64) -> std::io::Result<u64> {
    if lines == 0 {
        return Ok(len);
    }
    let mut block = vec![0u8; 64 * 1024];
    let mut found = 0;
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(u64::try_from(block.len()).unwrap_or(u64::MAX));
        let size = usize::try_from(end - start).unwrap_or(block.len());
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(&mut block[..size]).await?;
        for (index, byte) in block[..size].iter().enumerate().rev() {
            let position = start + u64::try_from(index).unwrap_or(0);
            // The file's last newline ends the last line; it starts none.
            if *byte == b'\n' && position + 1 != len {
                found += 1;
                if found == lines {
                    return Ok(position + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn line(time: &str, stream: &str, tag: &str, text: &str) -> String {
        format!("{time} {stream} {tag} {text}\n")
    }

    const T1: &str = "2026-01-01T10:00:00.5Z";
    const T2: &str = "2026-01-01T10:00:01Z";
    const T3: &str = "2026-01-01T10:00:02.123456789Z";

    fn sample() -> String {
        [
            line(T1, "stdout", "F", "one"),
            line(T1, "stderr", "F", "err one"),
            line(T2, "stdout", "P", "two "),
            line(T2, "stdout", "F", "and a half"),
            line(T3, "stdout", "F", ""),
            line(T3, "stderr", "F", "last"),
        ]
        .concat()
    }

    async fn collect(contents: &str, options: LogOptions) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        std::fs::write(&path, contents).expect("write");
        let file = File::open(&path).await.expect("open");
        let stream = read(file, options, Box::new(|| Box::pin(async { false })))
            .await
            .expect("read");
        let chunks: Vec<Bytes> = stream.map(|c| c.expect("chunk")).collect().await;
        String::from_utf8(chunks.concat()).expect("utf-8")
    }

    fn query(query: &str) -> LogOptions {
        LogOptions::from_query(query).expect("query")
    }

    #[tokio::test]
    async fn records_read_back_as_the_containers_output() {
        assert_eq!(
            collect(&sample(), LogOptions::default()).await,
            "one\nerr one\ntwo and a half\n\nlast\n"
        );
        assert_eq!(
            collect(&sample(), query("stream=Stdout")).await,
            "one\ntwo and a half\n\n"
        );
        assert_eq!(
            collect(&sample(), query("timestamps=true&tailLines=2")).await,
            format!("{T3} \n{T3} last\n")
        );
        assert_eq!(
            collect(&sample(), query("sinceTime=2026-01-01T10%3A00%3A01Z")).await,
            "two and a half\n\nlast\n"
        );
        assert_eq!(collect(&sample(), query("limitBytes=6")).await, "one\ner");
        assert_eq!(collect(&sample(), query("tailLines=0")).await, "");
        assert_eq!(
            collect(&sample(), query("tailLines=100")).await,
            collect(&sample(), LogOptions::default()).await
        );
        // Lines from before records are passed through.
        assert_eq!(collect("plain\nlines", query("tailLines=1")).await, "lines");
    }

    #[test]
    fn queries_parse_like_the_kubelet() {
        let options = query("follow=true&tailLines=10&limitBytes=5&previous=false&stream=All");
        assert_eq!(
            options,
            LogOptions {
                follow: true,
                tail_lines: Some(10),
                limit_bytes: Some(5),
                ..LogOptions::default()
            }
        );
        assert!(query("sinceSeconds=60").since.is_some());
        assert_eq!(query("tail=all&x=y"), LogOptions::default());
        for bad in [
            "tailLines=-1",
            "limitBytes=0",
            "follow=yes",
            "sinceSeconds=1&sinceTime=2026-01-01T00%3A00%3A00Z",
            "stream=Both",
            "sinceTime=yesterday",
        ] {
            assert!(LogOptions::from_query(bad).is_err(), "{bad}");
        }
        assert_eq!(percent_decode("a%3Ab+c%2"), "a:b c%2");
    }

    #[tokio::test]
    async fn output_becomes_records_with_long_lines_split() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let file = File::create(&path).await.expect("create");
        let long = "x".repeat(MAX_LINE + 10);
        let output = format!("hello\n\n{long}\nno newline");
        record(Stream::Stderr, output.as_bytes(), file).await;
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{}", lines.len());
        for line in &lines {
            let parsed = parse(line.as_bytes()).expect("a record");
            assert_eq!(parsed.stream, Stream::Stderr);
        }
        assert!(lines[0].ends_with(" stderr F hello"), "{}", lines[0]);
        assert!(lines[1].ends_with(" stderr F "), "{}", lines[1]);
        assert!(lines[2].contains(" stderr P xxx"), "{}", &lines[2][..60]);
        assert!(lines[3].ends_with(" stderr F xxxxxxxxxx"), "{}", lines[3]);
        assert!(lines[4].ends_with(" stderr P no newline"), "{}", lines[4]);
        let file = File::open(&path).await.expect("open");
        let stream = read(
            file,
            LogOptions::default(),
            Box::new(|| Box::pin(async { false })),
        )
        .await
        .expect("read");
        let chunks: Vec<Bytes> = stream.map(|c| c.expect("chunk")).collect().await;
        assert_eq!(String::from_utf8(chunks.concat()).expect("utf-8"), output);
    }

    #[tokio::test]
    async fn follow_streams_appended_records_until_told_to_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        std::fs::write(&path, line(T1, "stdout", "F", "first")).expect("write");
        let (running, running_rx) = tokio::sync::watch::channel(true);
        let follow_while: FollowWhile = Box::new(move || {
            let still = *running_rx.borrow();
            Box::pin(async move { still })
        });
        let file = File::open(&path).await.expect("open");
        let stream = read(file, query("follow=true"), follow_while)
            .await
            .expect("read");
        futures::pin_mut!(stream);
        let first = stream.next().await.expect("chunk").expect("ok");
        assert_eq!(&first[..], b"first\n");
        let mut append = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        std::io::Write::write_all(&mut append, line(T2, "stdout", "F", "second").as_bytes())
            .expect("append");
        let second = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("appended record arrives")
            .expect("chunk")
            .expect("ok");
        assert_eq!(&second[..], b"second\n");
        std::io::Write::write_all(&mut append, line(T3, "stdout", "F", "third").as_bytes())
            .expect("append");
        running.send_replace(false);
        let rest: Vec<Bytes> = tokio::time::timeout(
            Duration::from_secs(5),
            stream.map(|c| c.expect("chunk")).collect(),
        )
        .await
        .expect("the stream ends");
        assert_eq!(rest.concat(), b"third\n");
    }
}

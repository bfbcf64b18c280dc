//! Content negotiation of the Mesos v1 APIs: the request's `Content-Type` picks how the call
//! is decoded, the `Accept` header how a stream of events is encoded (JSON or protobuf).

/// `application/json`.
pub(crate) const JSON: &str = "application/json";
/// `application/x-protobuf`.
pub(crate) const PROTOBUF: &str = "application/x-protobuf";

/// A wire format of the Mesos v1 APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Mesos's JSON.
    Json,
    /// Protocol buffers.
    Protobuf,
}

impl Format {
    /// The media type.
    pub(crate) fn media_type(self) -> &'static str {
        match self {
            Format::Json => JSON,
            Format::Protobuf => PROTOBUF,
        }
    }
}

/// Why a request's media types cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MediaError {
    /// No `Content-Type` header (400).
    #[error("Expecting 'Content-Type' to be present")]
    MissingContentType,
    /// A `Content-Type` other than JSON or protobuf (415).
    #[error("Expecting 'Content-Type' of application/json or application/x-protobuf, got '{0}'")]
    UnsupportedContentType(String),
    /// An `Accept` header that allows neither JSON nor protobuf (406).
    #[error(
        "Expecting 'Accept' to allow 'application/json' or 'application/x-protobuf', got '{0}'"
    )]
    NotAcceptable(String),
}

impl MediaError {
    /// The HTTP status Mesos answers with: 400, 415 or 406.
    pub(crate) fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            MediaError::MissingContentType => StatusCode::BAD_REQUEST,
            MediaError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MediaError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
        }
    }
}

/// The media type of a header value: before any `;` parameters, trimmed, lower case.
fn essence(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The format of a request body with `Content-Type` `value`.
pub(crate) fn content_type(value: Option<&str>) -> Result<Format, MediaError> {
    let value = value.ok_or(MediaError::MissingContentType)?;
    match essence(value).as_str() {
        JSON => Ok(Format::Json),
        PROTOBUF => Ok(Format::Protobuf),
        _ => Err(MediaError::UnsupportedContentType(value.to_string())),
    }
}

/// The q-value of one media range (`1` when absent or unreadable).
fn quality(range: &str) -> f64 {
    range
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().strip_prefix("q="))
        .find_map(|q| q.trim().parse::<f64>().ok())
        .unwrap_or(1.0)
}

/// Whether `accept` (an `Accept` header value) allows `media` (with a q-value above zero).
fn accepts(accept: &str, media: &str) -> bool {
    let (kind, _) = media.split_once('/').unwrap_or((media, ""));
    accept.split(',').any(|range| {
        let e = essence(range);
        let matches = e == media || e == "*/*" || e == format!("{kind}/*");
        matches && quality(range) > 0.0
    })
}

/// The format of a response for `Accept` `value`: JSON when allowed (or no header), else
/// protobuf, as Mesos chooses.
pub(crate) fn accept(value: Option<&str>) -> Result<Format, MediaError> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(Format::Json);
    };
    if accepts(value, JSON) {
        Ok(Format::Json)
    } else if accepts(value, PROTOBUF) {
        Ok(Format::Protobuf)
    } else {
        Err(MediaError::NotAcceptable(value.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let table: &[(Option<&str>, Result<Format, MediaError>)] = &[
            (Some("application/json"), Ok(Format::Json)),
            (Some("Application/JSON; charset=utf-8"), Ok(Format::Json)),
            (Some("application/x-protobuf"), Ok(Format::Protobuf)),
            (None, Err(MediaError::MissingContentType)),
            (
                Some("text/plain"),
                Err(MediaError::UnsupportedContentType("text/plain".into())),
            ),
        ];
        for (value, want) in table {
            assert_eq!(&content_type(*value), want, "{value:?}");
        }
    }

    #[test]
    fn accept_headers() {
        let table: &[(Option<&str>, Result<Format, MediaError>)] = &[
            (None, Ok(Format::Json)),
            (Some("application/json"), Ok(Format::Json)),
            (Some("*/*"), Ok(Format::Json)),
            (Some("application/*"), Ok(Format::Json)),
            (Some("application/x-protobuf"), Ok(Format::Protobuf)),
            (
                Some("application/json;q=0, application/x-protobuf"),
                Ok(Format::Protobuf),
            ),
            (Some("text/html, application/json"), Ok(Format::Json)),
            (
                Some("text/html"),
                Err(MediaError::NotAcceptable("text/html".into())),
            ),
        ];
        for (value, want) in table {
            assert_eq!(&accept(*value), want, "{value:?}");
        }
    }

    #[test]
    fn messages_name_the_header_and_value() {
        let msg = content_type(Some("text/xml")).expect_err("415").to_string();
        assert!(
            msg.contains("'Content-Type'") && msg.contains("text/xml"),
            "{msg}"
        );
        let msg = accept(Some("image/png")).expect_err("406").to_string();
        assert!(
            msg.contains("'Accept'") && msg.contains("image/png"),
            "{msg}"
        );
    }
}

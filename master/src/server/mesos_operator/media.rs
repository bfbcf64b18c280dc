//! Content negotiation of `POST /api/v1` (as Mesos does it): `Content-Type` picks how the call
//! is decoded, `Accept` how the response (or the event stream) is encoded.

use axum::http::StatusCode;

/// `application/json`.
pub(crate) const JSON: &str = "application/json";
/// `application/x-protobuf`.
pub(crate) const PROTOBUF: &str = "application/x-protobuf";

/// A wire format of the v1 API.
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
    /// No `Content-Type` (400).
    #[error("Expecting 'Content-Type' to be present")]
    MissingContentType,
    /// Neither JSON nor protobuf (415).
    #[error("Expecting 'Content-Type' of application/json or application/x-protobuf, got '{0}'")]
    Unsupported(String),
    /// An `Accept` allowing neither (406).
    #[error(
        "Expecting 'Accept' to allow 'application/json' or 'application/x-protobuf', got '{0}'"
    )]
    NotAcceptable(String),
}

impl MediaError {
    /// The HTTP status Mesos answers with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            MediaError::MissingContentType => StatusCode::BAD_REQUEST,
            MediaError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MediaError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
        }
    }
}

/// The media type of a header value, without parameters, lower case.
fn essence(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The format of a body with `Content-Type` `value`.
pub(crate) fn content_type(value: Option<&str>) -> Result<Format, MediaError> {
    let value = value.ok_or(MediaError::MissingContentType)?;
    match essence(value).as_str() {
        JSON => Ok(Format::Json),
        PROTOBUF => Ok(Format::Protobuf),
        _ => Err(MediaError::Unsupported(value.to_string())),
    }
}

/// Whether `accept` allows `media` with a q-value above zero.
fn accepts(accept: &str, media: &str) -> bool {
    let kind = media.split('/').next().unwrap_or(media);
    accept.split(',').any(|range| {
        let e = essence(range);
        let q = range
            .split(';')
            .skip(1)
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f64>().ok())
            .unwrap_or(1.0);
        (e == media || e == "*/*" || e == format!("{kind}/*")) && q > 0.0
    })
}

/// The response format for `Accept` `value`: JSON when allowed (or absent), else protobuf.
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
    fn negotiation() {
        assert_eq!(
            content_type(Some("application/json; charset=utf-8")),
            Ok(Format::Json)
        );
        assert_eq!(
            content_type(Some("application/x-protobuf")),
            Ok(Format::Protobuf)
        );
        assert_eq!(content_type(None), Err(MediaError::MissingContentType));
        assert_eq!(
            content_type(Some("text/plain")).map_err(|e| e.status()),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(accept(None), Ok(Format::Json));
        assert_eq!(accept(Some("application/x-protobuf")), Ok(Format::Protobuf));
        assert_eq!(accept(Some("*/*")), Ok(Format::Json));
        assert_eq!(
            accept(Some("application/json;q=0, application/x-protobuf")),
            Ok(Format::Protobuf)
        );
        assert_eq!(
            accept(Some("text/html")).map_err(|e| e.status()),
            Err(StatusCode::NOT_ACCEPTABLE)
        );
    }
}

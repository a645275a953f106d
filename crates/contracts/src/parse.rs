//! Parsing with errors that name the field: `messages[0].role: unknown variant ...`.

use serde::de::DeserializeOwned;

/// A contract violation: where it is and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", if path.is_empty() || path == "." { "request body" } else { path.as_str() })]
pub struct ContractError {
    /// Dotted path to the offending field (`messages[0].role`); `.` for the top level.
    pub path: String,
    /// What was expected, as serde put it (without line/column noise).
    pub message: String,
    /// 1-based position in the input, where known.
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl ContractError {
    fn from_path_error(e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        // serde_path_to_error says `?` where the parser stopped before naming a member (in an
        // unfinished object, say): the error is then about the enclosing value.
        let path = e.path().to_string();
        let path = match path.strip_suffix('?').map(|p| p.trim_end_matches('.')) {
            Some("") => ".".to_owned(),
            Some(p) => p.to_owned(),
            None => path,
        };
        let inner = e.into_inner();
        let (line, column) = if inner.line() > 0 {
            (Some(inner.line()), Some(inner.column()))
        } else {
            (None, None)
        };
        // serde_json appends " at line L column C"; we report those separately.
        let mut message = inner.to_string();
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        Self {
            path,
            message,
            line,
            column,
        }
    }
}

/// Parses `T` from JSON text; the error names the field.
pub fn from_json_str<T: DeserializeOwned>(s: &str) -> Result<T, ContractError> {
    from_json(serde_json::Deserializer::from_str(s))
}

/// Parses `T` from JSON bytes; the error names the field, also for bytes that are not UTF-8
/// inside a string (`messages[0].content: invalid unicode code point ...`).
pub fn from_json_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ContractError> {
    from_json(serde_json::Deserializer::from_slice(bytes))
}

fn from_json<'de, R: serde_json::de::Read<'de>, T: DeserializeOwned>(
    mut de: serde_json::Deserializer<R>,
) -> Result<T, ContractError> {
    let value = serde_path_to_error::deserialize(&mut de).map_err(ContractError::from_path_error)?;
    de.end().map_err(|e| ContractError {
        path: ".".into(),
        message: "trailing characters after the JSON value".into(),
        line: Some(e.line()),
        column: Some(e.column()),
    })?;
    Ok(value)
}

/// Parses `T` from an already-parsed JSON value; the error names the field.
pub fn from_json_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ContractError> {
    serde_path_to_error::deserialize(v).map_err(ContractError::from_path_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Box<Body>>,
    }

    #[test]
    fn errors_name_the_member_or_the_body() {
        let e = from_json_slice::<Body>(b"{\"name\": \"bad \xff\"}").unwrap_err();
        assert_eq!(e.path, "name", "{e}");
        let e = from_json_str::<Body>("{").unwrap_err();
        assert_eq!(e.path, ".", "an unfinished body is the body's fault: {e}");
        let e = from_json_str::<Body>("{\"name\": \"a\", \"inner\": {").unwrap_err();
        assert_eq!(e.path, "inner", "{e}");
        let e = from_json_str::<Body>("{\"name\": 1}").unwrap_err();
        assert_eq!(e.path, "name", "{e}");
    }
}

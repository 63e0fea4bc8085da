//! The error JSON of the `echo-key` faults: a provider quoting back the credential it was sent.
//!
//! The gateway must never let its provider key reach a client, a log, a span or a metric, even
//! when a provider puts it in an error. These are the bodies that test that, fixed to the byte
//! so a test can compute where the key lands: the key starts at character
//! [`KEY_OFFSET`]` + pad` of [`error_json`] (all characters before it are ASCII, so that is also
//! the byte offset), which lets a test place it across any truncation limit.

use std::fmt::Write as _;

/// What the message says before the filler and the key (OpenAI's wording for a bad key).
pub const MESSAGE_PREFIX: &str = "Incorrect API key provided: ";
/// The filler `key-pad:N` puts before the key.
pub const PAD_CHAR: char = 'x';
/// The JSON before the message text.
const BODY_HEAD: &str = r#"{"error":{"message":""#;
/// The JSON after the message text.
const BODY_TAIL: &str =
    r#"","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
/// Characters (and bytes) of [`error_json`] before the filler; the key follows `pad` later.
pub const KEY_OFFSET: usize = BODY_HEAD.len() + MESSAGE_PREFIX.len();

/// `{"error":{"message":"Incorrect API key provided: <pad><key>","type":"invalid_request_error",
/// "param":null,"code":"invalid_api_key"}}` with `pad` filler characters; the key either as
/// `serde_json` escapes a string or, when `escaped`, entirely in `\uXXXX` escapes.
pub fn error_json(key: &str, pad: usize, escaped: bool) -> String {
    let mut out = String::with_capacity(KEY_OFFSET + pad + 6 * key.len() + BODY_TAIL.len());
    out.push_str(BODY_HEAD);
    out.push_str(MESSAGE_PREFIX);
    out.extend(std::iter::repeat_n(PAD_CHAR, pad));
    if escaped {
        out.push_str(&escape_every_char(key));
    } else {
        out.push_str(&json_string_content(key));
    }
    out.push_str(BODY_TAIL);
    out
}

/// The `key-pad:N` that puts the first `inside` characters of the key before character
/// `limit` of the error JSON and the rest after it: the key straddles a cut at `limit`, so a
/// consumer that truncates before it redacts keeps an `inside`-character prefix. `None` when
/// `limit` is too close to the start for that (the key cannot begin before [`KEY_OFFSET`]).
pub fn pad_to_straddle(limit: usize, inside: usize) -> Option<usize> {
    limit.checked_sub(KEY_OFFSET + inside)
}

/// One SSE event carrying `json` (an [`error_json`]): `data: {…}\n\n`.
pub fn event(json: &str) -> String {
    format!("data: {json}\n\n")
}

/// Every character as a JSON `\uXXXX` escape (lowercase hex), beyond the BMP as the UTF-16
/// surrogate pair JSON requires.
pub fn escape_every_char(text: &str) -> String {
    let mut out = String::with_capacity(6 * text.len());
    for unit in text.encode_utf16() {
        // Writing to a String cannot fail.
        let _ = write!(out, "\\u{unit:04x}");
    }
    out
}

/// `text` as it appears between the quotes of a JSON string.
fn json_string_content(text: &str) -> String {
    // Serializing a &str cannot fail; the quotes are the first and last bytes.
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .map(str::to_owned)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn message(body: &str) -> String {
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert!(v["error"]["param"].is_null());
        v["error"]["message"].as_str().unwrap().to_owned()
    }

    #[test]
    fn body_is_fixed_and_the_key_sits_at_the_offset() {
        let body = error_json("sk-abc", 0, false);
        assert_eq!(
            body,
            r#"{"error":{"message":"Incorrect API key provided: sk-abc","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#
        );
        assert_eq!(KEY_OFFSET, 49);
        assert_eq!(&body[KEY_OFFSET..KEY_OFFSET + 6], "sk-abc");
        for pad in [0, 1, 150, 200 - KEY_OFFSET - 3] {
            let body = error_json("sk-abc", pad, false);
            assert_eq!(
                &body[KEY_OFFSET + pad..KEY_OFFSET + pad + 6],
                "sk-abc",
                "{pad}"
            );
            assert_eq!(
                message(&body),
                format!("{MESSAGE_PREFIX}{}sk-abc", "x".repeat(pad))
            );
        }
    }

    #[test]
    fn straddling_pad_cuts_the_key_where_asked() {
        let key = "sk-abcdefghijklmnop";
        for (limit, inside) in [(200, 12), (200, 1), (65_536, 12), (KEY_OFFSET + 3, 3)] {
            let pad = pad_to_straddle(limit, inside).unwrap();
            let body = error_json(key, pad, false);
            assert_eq!(&body[limit - inside..limit], &key[..inside], "{limit}");
            assert_eq!(&body[limit..limit + 1], &key[inside..=inside], "{limit}");
        }
        assert_eq!(pad_to_straddle(KEY_OFFSET + 2, 3), None);
    }

    #[test]
    fn escaped_key_decodes_back_and_contains_no_raw_character_of_it() {
        for key in ["sk-abc", "sk-proj-Zz09_-", "k\"ey\\/é", "🔑", ""] {
            let body = error_json(key, 3, true);
            assert_eq!(message(&body), format!("{MESSAGE_PREFIX}xxx{key}"), "{key}");
            let written = &body[KEY_OFFSET + 3..body.len() - BODY_TAIL.len()];
            assert_eq!(written.len(), 6 * key.encode_utf16().count(), "{key}");
            assert!(
                written.split("\\u").skip(1).all(|u| u.len() == 4),
                "{written}"
            );
        }
        assert_eq!(escape_every_char("sK-"), "\\u0073\\u004b\\u002d");
        assert_eq!(escape_every_char("🔑"), "\\ud83d\\udd11");
    }

    #[test]
    fn raw_key_is_valid_json_whatever_it_holds() {
        for key in ["sk-abc", "quote\"back\\slash", "line\nbreak", ""] {
            let body = error_json(key, 0, false);
            assert_eq!(message(&body), format!("{MESSAGE_PREFIX}{key}"));
        }
        let ev = event(&error_json("sk-abc", 2, false));
        let data = ev
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        assert_eq!(data, error_json("sk-abc", 2, false));
    }
}

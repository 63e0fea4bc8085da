//! Token counts when a provider reports none: a tiktoken count with the encoding of the
//! model's family. The BPE tables are compiled into the binary and each is loaded once, the
//! first time a count needs it (about 20–50 MB each; most deployments never need them, since
//! providers report usage). Counting runs when a request is recorded, after its response was
//! sent, so the one-time load never delays an answer.

use tiktoken_rs::CoreBPE;

/// o200k for the GPT-4o, GPT-4.1, GPT-5 and o-series families; cl100k for everything else
/// (GPT-4, GPT-3.5, embeddings, and models of other vendors, where it is the closer guess).
fn encoding_for(model: &str) -> &'static CoreBPE {
    let m = model.to_ascii_lowercase();
    let o200k = m.starts_with("gpt-4o")
        || m.starts_with("gpt-4.1")
        || m.starts_with("gpt-5")
        || m.starts_with("chatgpt-4o")
        || m.starts_with("o1")
        || m.starts_with("o3")
        || m.starts_with("o4");
    if o200k {
        tiktoken_rs::o200k_base_singleton()
    } else {
        tiktoken_rs::cl100k_base_singleton()
    }
}

/// Tokens in `text` for `model`.
pub fn count(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    encoding_for(model).encode_with_special_tokens(text).len() as u64
}

/// OpenAI's chat framing: about 3 tokens per message plus 3 to prime the reply.
pub const TOKENS_PER_MESSAGE: u64 = 3;

/// Estimated input tokens of an OpenAI request body: the text of `messages` (string contents
/// and text parts), `prompt` or `input`, plus chat framing.
pub fn estimate_input(model: &str, body: &[u8]) -> u64 {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return 0;
    };
    let mut text = String::new();
    let mut messages = 0u64;
    if let Some(list) = v.get("messages").and_then(|m| m.as_array()) {
        for m in list {
            messages += 1;
            match m.get("content") {
                Some(serde_json::Value::String(s)) => push(&mut text, s),
                Some(serde_json::Value::Array(parts)) => {
                    for p in parts {
                        if let Some(s) = p.get("text").and_then(|t| t.as_str()) {
                            push(&mut text, s);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for key in ["prompt", "input"] {
        match v.get(key) {
            Some(serde_json::Value::String(s)) => push(&mut text, s),
            Some(serde_json::Value::Array(items)) => {
                for s in items.iter().filter_map(|i| i.as_str()) {
                    push(&mut text, s);
                }
            }
            _ => {}
        }
    }
    let framing = if messages > 0 {
        messages * TOKENS_PER_MESSAGE + 3
    } else {
        0
    };
    count(model, &text) + framing
}

fn push(text: &mut String, s: &str) {
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_picks_the_encoding() {
        let s = "Hello, world! Tokenizers differ on this sentence: naïve café 😀.";
        assert_eq!(count("gpt-4o-mini", s), count("o3", s));
        assert_eq!(count("gpt-4", s), count("text-embedding-3-small", s));
        assert_ne!(count("gpt-4o", s), 0);
        assert_eq!(count("gpt-4o", ""), 0);
    }

    #[test]
    fn input_estimate_covers_messages_parts_and_prompts() {
        let chat = br#"{"messages":[{"role":"user","content":"hello there"},{"role":"user","content":[{"type":"text","text":"and more"}]}]}"#;
        let n = estimate_input("gpt-4o", chat);
        assert_eq!(
            n,
            count("gpt-4o", "hello there\nand more") + 2 * TOKENS_PER_MESSAGE + 3
        );
        let emb = br#"{"input":["a b c","d"]}"#;
        assert_eq!(
            estimate_input("text-embedding-3-small", emb),
            count("text-embedding-3-small", "a b c\nd")
        );
        assert_eq!(estimate_input("m", b"not json"), 0);
    }
}

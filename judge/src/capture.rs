//! What is judged: the conversation from the request body and the answer from the response,
//! each bounded in bytes.
//!
//! Capture happens only for sampled requests. [`Conversation::from_request`] reads an OpenAI
//! chat request (`messages`: system, developer, user, assistant, tool; tool calls and tool
//! results included; images, audio and files replaced by `[image]`, `[audio]`, `[file]`) or a
//! legacy completions request (`prompt`). [`AnswerAssembler`] is fed a whole
//! `chat.completion` / `text_completion` body or the `data:` payloads of a stream, and
//! assembles the first choice's text, refusal and tool calls (arguments concatenated by the
//! tool call's `index`). Reasoning text some providers stream alongside is not judged.
//!
//! # Bounds
//!
//! Bytes are counted over text (contents, tool-call ids, names and arguments), not over the
//! JSON that carries it. Cuts fall on UTF-8 character boundaries.
//!
//! - **The answer** keeps its first `max_bytes`: it arrives as a stream, and its beginning is
//!   what the user read first. Anything cut sets [`Answer::truncated`].
//! - **The conversation** keeps the leading `system`/`developer` messages (the instructions,
//!   and in RAG setups usually the context the answer must be faithful to) and the most
//!   recent messages (the question being answered), and drops whole messages from the middle,
//!   as chat applications trim their own context; [`Conversation::omitted_messages`] counts
//!   them (they sat right after the leading instructions). The leading messages get at most
//!   half the bound when there is anything after them; the newest message is always kept,
//!   if need be shortened; space the recent messages do not use goes back to the leading ones.
//! - **A shortened string** keeps its beginning and its end around a marker
//!   `…[N bytes cut]…` that counts toward the bound: a long user message is often a pasted
//!   document followed by the question, and both ends matter.
//! - Several strings sharing a bound are shortened by water-filling: each gets an equal share,
//!   and what a short string does not need is shared among the longer ones, so the longest
//!   strings pay first.
//!
//! In the judge prompt the two sides share one bound ([`fit_pair`]): the shorter side keeps all
//! it has, up to half, and the longer side gets the rest.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::Error;

/// Placeholder for an image part.
pub const IMAGE: &str = "[image]";
/// Placeholder for an audio part.
pub const AUDIO: &str = "[audio]";
/// Placeholder for a file part.
pub const FILE: &str = "[file]";
/// Placeholder for a content part of a kind Sluice does not know.
pub const ATTACHMENT: &str = "[attachment]";
/// Placeholder for a prompt given as token ids.
pub const TOKEN_IDS: &str = "[token ids]";
/// Placeholder for a message that is not a readable chat message.
pub const UNREADABLE: &str = "[unreadable message]";
/// Longest id or name kept: these are identifiers, not text to judge.
const MAX_IDENT: usize = 256;
/// Most tool calls assembled per answer, and tool names kept per request.
const MAX_TOOLS: usize = 128;

/// The conversation the answer replied to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Conversation {
    pub messages: Vec<Message>,
    /// Messages dropped to fit the bound; they came right after the leading
    /// `system`/`developer` messages.
    pub omitted_messages: usize,
    /// Names of the tools the request offered (not their schemas).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: Role,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// A message's author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    /// A tool result (also the legacy `function` role).
    Tool,
    /// A role Sluice does not know.
    Other,
}

/// A tool call, made by the assistant in the conversation or in the answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (normally a JSON text).
    pub arguments: String,
}

/// The answer being judged: the first choice.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Answer {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content: String,
    /// The model's refusal text, when it refused.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub refusal: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Capture cut the answer to its bound (the model did not).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// Builds an [`Answer`] from a response, bounded in bytes.
#[derive(Debug)]
pub struct AnswerAssembler {
    max_bytes: usize,
    used: usize,
    answer: Answer,
    /// The streamed `index` of each entry of `answer.tool_calls`.
    tool_index: Vec<u64>,
}

// === impl Conversation ===

impl Conversation {
    /// Reads the conversation of a chat or completions request body, bounded to `max_bytes`.
    pub fn from_request(body: &[u8], max_bytes: usize) -> Result<Self, Error> {
        let raw: RawRequest<'_> = serde_json::from_slice(body).map_err(|_| Error::NotJson)?;
        let mut conversation = Self::default();
        if let Some(messages) = raw.messages {
            conversation.messages = messages.iter().copied().map(read_message).collect();
        } else if let Some(prompt) = raw.prompt {
            conversation.messages.push(Message {
                role: Role::User,
                content: read_prompt(prompt),
                tool_calls: Vec::new(),
                tool_call_id: None,
            });
        } else {
            return Err(Error::NoConversation);
        }
        conversation.tools = raw
            .tools
            .unwrap_or_default()
            .iter()
            .filter_map(|t| serde_json::from_str::<RawTool<'_>>(t.get()).ok())
            .filter_map(|t| t.function.or(t.custom).map(|f| f.name))
            .take(MAX_TOOLS)
            .map(|n| prefix(&n, MAX_IDENT).to_owned())
            .collect();
        conversation.fit(max_bytes);
        Ok(conversation)
    }

    /// Bytes of text held.
    pub fn text_len(&self) -> usize {
        self.messages.iter().map(Message::text_len).sum::<usize>()
            + self.tools.iter().map(String::len).sum::<usize>()
    }

    /// Shrinks the conversation to `max_bytes` of text (see the module doc).
    pub fn fit(&mut self, max_bytes: usize) {
        if self.text_len() <= max_bytes {
            return;
        }
        // Tool names help judge a tool call but are not what is judged: they get an eighth.
        let mut tool_bytes = 0;
        let keep = self
            .tools
            .iter()
            .take_while(|t| {
                tool_bytes += t.len();
                tool_bytes <= max_bytes / 8
            })
            .count();
        self.tools.truncate(keep);
        let budget = max_bytes - self.tools.iter().map(String::len).sum::<usize>();
        let sizes: Vec<usize> = self.messages.iter().map(Message::text_len).collect();
        let head = self
            .messages
            .iter()
            .take_while(|m| matches!(m.role, Role::System | Role::Developer))
            .count();
        let plan = plan(&sizes, head, budget);
        let omitted = plan.tail_start - plan.head_end;
        if omitted > 0 {
            self.messages.drain(plan.head_end..plan.tail_start);
            self.omitted_messages += omitted;
        }
        for (message, allowance) in self.messages.iter_mut().zip(plan.allowances) {
            message.shrink(allowance);
        }
    }
}

/// Which messages a bounded conversation keeps: `..head_end` and `tail_start..`, each kept
/// message with its allowance in bytes.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    head_end: usize,
    tail_start: usize,
    allowances: Vec<usize>,
}

/// Decides the cut for messages of `sizes` bytes, the first `head` of which are instructions.
fn plan(sizes: &[usize], head: usize, budget: usize) -> Plan {
    let n = sizes.len();
    let head = head.min(n);
    if sizes.iter().sum::<usize>() <= budget {
        return Plan {
            head_end: n,
            tail_start: n,
            allowances: sizes.to_vec(),
        };
    }
    let head_want: usize = sizes[..head].iter().sum();
    let head_share = if head == n {
        budget
    } else {
        head_want.min(budget / 2)
    };
    let mut left = budget - head_share;
    let mut tail_start = n;
    let mut tail = Vec::new();
    for i in (head..n).rev() {
        if sizes[i] <= left {
            left -= sizes[i];
            tail.push(sizes[i]);
            tail_start = i;
        } else {
            if tail.is_empty() {
                // The newest message is what was answered: keep what fits of it.
                tail.push(left);
                tail_start = i;
                left = 0;
            }
            break;
        }
    }
    tail.reverse();
    let mut allowances = water_fill(&sizes[..head], head_share + left);
    allowances.extend(tail);
    Plan {
        head_end: head,
        tail_start,
        allowances,
    }
}

// === impl Message ===

impl Message {
    /// Bytes of text held.
    pub fn text_len(&self) -> usize {
        self.content.len()
            + self.tool_call_id.as_ref().map_or(0, String::len)
            + self
                .tool_calls
                .iter()
                .map(ToolCall::text_len)
                .sum::<usize>()
    }

    fn shrink(&mut self, allowance: usize) {
        if self.text_len() <= allowance {
            return;
        }
        let mut fields: Vec<&mut String> = vec![&mut self.content];
        fields.extend(self.tool_call_id.as_mut());
        for call in &mut self.tool_calls {
            fields.extend([&mut call.id, &mut call.name, &mut call.arguments]);
        }
        shrink_fields(&mut fields, allowance);
    }
}

impl ToolCall {
    fn text_len(&self) -> usize {
        self.id.len() + self.name.len() + self.arguments.len()
    }
}

// === impl Answer ===

impl Answer {
    /// Bytes of text held.
    pub fn text_len(&self) -> usize {
        self.content.len()
            + self.refusal.len()
            + self
                .tool_calls
                .iter()
                .map(ToolCall::text_len)
                .sum::<usize>()
    }

    /// Whether there is nothing to judge: no text, no refusal, no tool call.
    pub fn is_empty(&self) -> bool {
        self.content.trim().is_empty()
            && self.refusal.trim().is_empty()
            && self.tool_calls.is_empty()
    }

    /// Shrinks the answer to `max_bytes` of text.
    pub fn fit(&mut self, max_bytes: usize) {
        if self.text_len() <= max_bytes {
            return;
        }
        self.truncated = true;
        let mut fields: Vec<&mut String> = vec![&mut self.content, &mut self.refusal];
        for call in &mut self.tool_calls {
            fields.extend([&mut call.id, &mut call.name, &mut call.arguments]);
        }
        shrink_fields(&mut fields, max_bytes);
    }
}

/// Fits a conversation and an answer into `max_bytes` together: the shorter keeps what it has
/// up to half, the other gets the rest.
pub fn fit_pair(conversation: &mut Conversation, answer: &mut Answer, max_bytes: usize) {
    let shares = water_fill(&[conversation.text_len(), answer.text_len()], max_bytes);
    conversation.fit(shares[0]);
    answer.fit(shares[1]);
}

// === impl AnswerAssembler ===

impl AnswerAssembler {
    /// An empty answer that will hold at most `max_bytes` of text.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            used: 0,
            answer: Answer::default(),
            tool_index: Vec::new(),
        }
    }

    /// Reads a whole `chat.completion` or `text_completion` body.
    pub fn push_body(&mut self, body: &[u8]) -> Result<(), Error> {
        let raw: RawAnswer<'_> = serde_json::from_slice(body).map_err(|_| Error::NotJson)?;
        if raw.error.is_some() {
            return Err(Error::ErrorObject);
        }
        let Some(choice) = first_choice(raw.choices) else {
            return Ok(());
        };
        if let Some(message) = choice.message {
            if let Some(content) = message.content {
                self.push_content(&content);
            }
            if let Some(refusal) = message.refusal {
                self.push_refusal(&refusal);
            }
            let calls = message.tool_calls.unwrap_or_default();
            for (i, call) in calls.iter().enumerate() {
                let Ok(call) = serde_json::from_str::<RawToolCall<'_>>(call.get()) else {
                    continue;
                };
                let (name, arguments) = call.name_and_arguments();
                self.push_tool_delta(i as u64, call.id.as_deref(), name, arguments);
            }
            if let Some(f) = message.function_call {
                let at = self.answer.tool_calls.len() as u64;
                self.push_tool_delta(at, None, f.name.as_deref(), f.arguments.as_deref());
            }
        }
        if let Some(text) = choice.text {
            self.push_content(&text);
        }
        self.note_finish(choice.finish_reason);
        Ok(())
    }

    /// Reads one streamed event's `data:` payload: a `chat.completion.chunk` or streamed
    /// `text_completion`. `[DONE]` is accepted and ignored.
    pub fn push_chunk(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.trim_ascii() == b"[DONE]" {
            return Ok(());
        }
        let raw: RawChunk<'_> = serde_json::from_slice(data).map_err(|_| Error::NotJson)?;
        if raw.error.is_some() {
            return Err(Error::ErrorObject);
        }
        let Some(choice) = first_choice(raw.choices) else {
            // The usage-only chunk, or a chunk for another choice.
            return Ok(());
        };
        if let Some(delta) = choice.delta {
            if let Some(content) = delta.content {
                self.push_content(&content);
            }
            if let Some(refusal) = delta.refusal {
                self.push_refusal(&refusal);
            }
            for call in delta.tool_calls.unwrap_or_default() {
                let Ok(call) = serde_json::from_str::<RawToolCall<'_>>(call.get()) else {
                    continue;
                };
                let (name, arguments) = call.name_and_arguments();
                let index = call.index.unwrap_or(0);
                self.push_tool_delta(index, call.id.as_deref(), name, arguments);
            }
            if let Some(f) = delta.function_call {
                self.push_tool_delta(0, None, f.name.as_deref(), f.arguments.as_deref());
            }
        }
        if let Some(text) = choice.text {
            self.push_content(&text);
        }
        self.note_finish(choice.finish_reason);
        Ok(())
    }

    /// The answer assembled so far.
    pub fn finish(self) -> Answer {
        self.answer
    }

    fn push_content(&mut self, s: &str) {
        let taken = self.take(s);
        self.answer.content.push_str(taken);
    }

    fn push_refusal(&mut self, s: &str) {
        let taken = self.take(s);
        self.answer.refusal.push_str(taken);
    }

    /// Adds one tool-call delta: the id and name are set by the first delta that has them,
    /// arguments are appended.
    fn push_tool_delta(
        &mut self,
        index: u64,
        id: Option<&str>,
        name: Option<&str>,
        arguments: Option<&str>,
    ) {
        let at = match self.tool_index.iter().position(|i| *i == index) {
            Some(at) => at,
            None if self.tool_index.len() < MAX_TOOLS && self.used < self.max_bytes => {
                self.tool_index.push(index);
                self.answer.tool_calls.push(ToolCall::default());
                self.answer.tool_calls.len() - 1
            }
            None => {
                self.answer.truncated = true;
                return;
            }
        };
        if let Some(id) = id.filter(|s| !s.is_empty())
            && self.answer.tool_calls[at].id.is_empty()
        {
            let taken = self.take(prefix(id, MAX_IDENT));
            self.answer.tool_calls[at].id.push_str(taken);
        }
        if let Some(name) = name.filter(|s| !s.is_empty())
            && self.answer.tool_calls[at].name.is_empty()
        {
            let taken = self.take(prefix(name, MAX_IDENT));
            self.answer.tool_calls[at].name.push_str(taken);
        }
        if let Some(arguments) = arguments {
            let taken = self.take(arguments);
            self.answer.tool_calls[at].arguments.push_str(taken);
        }
    }

    fn note_finish(&mut self, reason: Option<Cow<'_, str>>) {
        if let Some(r) = reason
            && self.answer.finish_reason.is_none()
        {
            self.answer.finish_reason = Some(prefix(&r, MAX_IDENT).to_owned());
        }
    }

    /// The part of `s` that still fits the bound; marks the answer truncated when cut.
    fn take<'s>(&mut self, s: &'s str) -> &'s str {
        let taken = prefix(s, self.max_bytes - self.used);
        if taken.len() < s.len() {
            // The answer keeps its beginning: after the first cut nothing more is taken, so
            // no later text is spliced onto a cut one.
            self.answer.truncated = true;
            self.used = self.max_bytes;
            return taken;
        }
        self.used += taken.len();
        taken
    }
}

// === reading requests and answers ===

#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(default, borrow)]
    messages: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tools: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    function_call: Option<RawFunction<'a>>,
    #[serde(default, borrow)]
    tool_call_id: Option<Cow<'a, str>>,
    /// The legacy `function` role names its function instead of a call id.
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawPart<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawToolCall<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<RawFunction<'a>>,
    /// Custom (free-form input) tools.
    #[serde(default, borrow)]
    custom: Option<RawCustom<'a>>,
}

#[derive(Deserialize)]
struct RawFunction<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawCustom<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    input: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawTool<'a> {
    #[serde(default, borrow)]
    function: Option<RawNamed<'a>>,
    #[serde(default, borrow)]
    custom: Option<RawNamed<'a>>,
}

#[derive(Deserialize)]
struct RawNamed<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RawAnswer<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<RawChoice<'a>>>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawChoice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    message: Option<RawAnswerMessage<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawAnswerMessage<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    function_call: Option<RawFunction<'a>>,
}

#[derive(Deserialize)]
struct RawChunk<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<RawChunkChoice<'a>>>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawChunkChoice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    delta: Option<RawDelta<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    function_call: Option<RawFunction<'a>>,
}

trait Indexed {
    fn index(&self) -> u64;
}

impl Indexed for RawChoice<'_> {
    fn index(&self) -> u64 {
        self.index.unwrap_or(0)
    }
}

impl Indexed for RawChunkChoice<'_> {
    fn index(&self) -> u64 {
        self.index.unwrap_or(0)
    }
}

/// The choice with index 0 (a missing index counts as 0): only the first choice is judged.
fn first_choice<C: Indexed>(choices: Option<Vec<C>>) -> Option<C> {
    choices?.into_iter().find(|c| c.index() == 0)
}

impl<'a> RawToolCall<'a> {
    fn name_and_arguments(&self) -> (Option<&str>, Option<&str>) {
        match (&self.function, &self.custom) {
            (Some(f), _) => (f.name.as_deref(), f.arguments.as_deref()),
            (None, Some(c)) => (c.name.as_deref(), c.input.as_deref()),
            (None, None) => (None, None),
        }
    }
}

fn read_role(role: &str) -> Role {
    match role {
        "system" => Role::System,
        "developer" => Role::Developer,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        _ => Role::Other,
    }
}

fn read_message(raw: &RawValue) -> Message {
    let Ok(m) = serde_json::from_str::<RawMessage<'_>>(raw.get()) else {
        return Message {
            role: Role::Other,
            content: UNREADABLE.to_owned(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        };
    };
    let role = read_role(&m.role);
    let mut content = m.content.map(read_content).unwrap_or_default();
    if let Some(refusal) = m.refusal.filter(|r| !r.is_empty()) {
        join(&mut content, &refusal);
    }
    let mut tool_calls: Vec<ToolCall> = m
        .tool_calls
        .unwrap_or_default()
        .iter()
        .filter_map(|c| serde_json::from_str::<RawToolCall<'_>>(c.get()).ok())
        .take(MAX_TOOLS)
        .map(|c| {
            let (name, arguments) = c.name_and_arguments();
            ToolCall {
                id: prefix(c.id.as_deref().unwrap_or_default(), MAX_IDENT).to_owned(),
                name: prefix(name.unwrap_or_default(), MAX_IDENT).to_owned(),
                arguments: arguments.unwrap_or_default().to_owned(),
            }
        })
        .collect();
    if let Some(f) = m.function_call {
        tool_calls.push(ToolCall {
            id: String::new(),
            name: prefix(f.name.as_deref().unwrap_or_default(), MAX_IDENT).to_owned(),
            arguments: f.arguments.as_deref().unwrap_or_default().to_owned(),
        });
    }
    let tool_call_id = match role {
        Role::Tool => m.tool_call_id.or(m.name),
        _ => None,
    }
    .map(|id| prefix(&id, MAX_IDENT).to_owned());
    Message {
        role,
        content,
        tool_calls,
        tool_call_id,
    }
}

/// A message's `content`: a string, or parts joined by newlines with non-text parts as
/// placeholders.
fn read_content(raw: &RawValue) -> String {
    if let Ok(s) = serde_json::from_str::<Cow<'_, str>>(raw.get()) {
        return s.into_owned();
    }
    let Ok(parts) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        // `null` and anything that is neither a string nor parts.
        return String::new();
    };
    let mut out = String::new();
    for part in parts {
        let Ok(p) = serde_json::from_str::<RawPart<'_>>(part.get()) else {
            join(&mut out, ATTACHMENT);
            continue;
        };
        let piece: Cow<'_, str> = match p.kind.as_deref() {
            Some("text" | "input_text" | "output_text") => p.text.unwrap_or_default(),
            Some("refusal") => p.refusal.unwrap_or_default(),
            Some("image_url" | "image" | "input_image") => IMAGE.into(),
            Some("input_audio" | "audio") => AUDIO.into(),
            Some("file" | "input_file") => FILE.into(),
            _ => p.text.unwrap_or(Cow::Borrowed(ATTACHMENT)),
        };
        join(&mut out, &piece);
    }
    out
}

/// A completions `prompt`: a string, strings (the first one is what choice 0 answers),
/// or token ids.
fn read_prompt(raw: &RawValue) -> String {
    if let Ok(s) = serde_json::from_str::<Cow<'_, str>>(raw.get()) {
        return s.into_owned();
    }
    if let Ok(list) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
        return match list.first() {
            Some(first) => match serde_json::from_str::<Cow<'_, str>>(first.get()) {
                Ok(s) => s.into_owned(),
                Err(_) => TOKEN_IDS.to_owned(),
            },
            None => String::new(),
        };
    }
    String::new()
}

fn join(out: &mut String, piece: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(piece);
}

// === bounding text ===

/// Shares `budget` among items of `sizes` bytes: each gets an equal share, and what an item
/// does not need goes to the larger ones. The result sums to at most `budget`, and gives
/// every item all it has when the sizes fit.
pub(crate) fn water_fill(sizes: &[usize], budget: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|i| sizes[*i]);
    let mut out = vec![0; sizes.len()];
    let mut left = budget;
    for (k, i) in order.into_iter().enumerate() {
        let share = left / (sizes.len() - k);
        out[i] = sizes[i].min(share);
        left -= out[i];
    }
    out
}

fn shrink_fields(fields: &mut [&mut String], budget: usize) {
    let sizes: Vec<usize> = fields.iter().map(|f| f.len()).collect();
    for (field, allowance) in fields.iter_mut().zip(water_fill(&sizes, budget)) {
        if field.len() > allowance {
            **field = cut_middle(field, allowance).into_owned();
        }
    }
}

/// `s` in at most `max` bytes: its beginning and its end around `…[N bytes cut]…`, or just
/// its beginning when `max` is too small for the marker to leave room for text.
pub fn cut_middle(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    // The marker is longest when the most is cut, which is at most `s.len()` bytes.
    let marker_max = cut_marker(s.len()).len();
    if max < marker_max + 16 {
        return Cow::Borrowed(prefix(s, max));
    }
    let keep = max - marker_max;
    let head = prefix(s, keep - keep / 2);
    let tail = suffix(s, keep / 2);
    let cut = s.len() - head.len() - tail.len();
    Cow::Owned(format!("{head}{}{tail}", cut_marker(cut)))
}

fn cut_marker(bytes: usize) -> String {
    format!("…[{bytes} bytes cut]…")
}

/// The longest beginning of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The longest end of `s` of at most `max` bytes that starts on a character boundary.
fn suffix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests;

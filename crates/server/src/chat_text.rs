//! Conversations that arrive already rendered with a *policy's* chat template (OpenRLHF queries,
//! vLLM/SGLang text inputs), parsed back into messages so the reward model's own template renders
//! them: a Qwen (ChatML) policy can be scored by a Llama-3 reward model, and a Llama-3 query never
//! ends up with two `<|begin_of_text|>` tokens.

use armorm_model::RawMessage;

use crate::error::ApiError;

/// A chat format: turn opener, how the role ends, turn closer, and role spellings.
struct Format {
    name: &'static str,
    /// Strings stripped from the front (BOS tokens), any number of times.
    prefixes: &'static [&'static str],
    open: &'static str,
    /// Separates the role from the content.
    role_end: &'static str,
    close: &'static str,
    /// Trailing strings after the last turn (EOS / padding) that carry no content.
    trailers: &'static [&'static str],
}

const LLAMA3: Format = Format {
    name: "Llama-3",
    prefixes: &["<|begin_of_text|>"],
    open: "<|start_header_id|>",
    role_end: "<|end_header_id|>\n\n",
    close: "<|eot_id|>",
    trailers: &["<|end_of_text|>", "<|eot_id|>"],
};

const CHATML: Format = Format {
    name: "ChatML",
    prefixes: &[],
    open: "<|im_start|>",
    role_end: "\n",
    close: "<|im_end|>",
    trailers: &["<|endoftext|>", "<|im_end|>"],
};

const GEMMA: Format = Format {
    name: "Gemma",
    prefixes: &["<bos>"],
    open: "<start_of_turn>",
    role_end: "\n",
    close: "<end_of_turn>",
    trailers: &["<eos>", "<pad>"],
};

const FORMATS: [Format; 3] = [LLAMA3, CHATML, GEMMA];

/// Parses text in one of the known chat formats (Llama-3, ChatML, Gemma, Phi-3, Mistral `[INST]`).
pub fn parse(text: &str) -> Result<Vec<RawMessage>, ApiError> {
    if let Some(format) = FORMATS.iter().find(|f| text.contains(f.open)) {
        return parse_turns(format, text);
    }
    if text.contains("<|user|>") || text.contains("<|assistant|>") {
        return parse_phi3(text);
    }
    if text.contains("[INST]") {
        return parse_mistral(text);
    }
    Err(ApiError::InvalidRequest(
        "cannot parse the query as a chat: no Llama-3, ChatML, Gemma, Phi-3 or Mistral turn markers found".into(),
    ))
}

fn parse_turns(f: &Format, text: &str) -> Result<Vec<RawMessage>, ApiError> {
    let mut rest = text.trim_start();
    while let Some(stripped) = f.prefixes.iter().find_map(|p| rest.strip_prefix(p)) {
        rest = stripped.trim_start();
    }
    let mut segments = rest.split(f.open);
    let before = segments.next().unwrap_or_default();
    if !before.trim().is_empty() {
        return Err(unparseable(f.name, &format!("text before the first turn: {:?}", clip(before))));
    }
    segments
        .map(|segment| {
            let (role, content) = segment
                .split_once(f.role_end)
                .ok_or_else(|| unparseable(f.name, &format!("a turn without a role: {:?}", clip(segment))))?;
            // Anything after the closer (EOS, padding) is not content; an unclosed last turn is the
            // response as generated.
            let content = content.split(f.close).next().unwrap_or_default();
            let content = strip_trailers(content, f.trailers);
            Ok(RawMessage { role: normalise_role(role.trim()), content: content.to_string() })
        })
        .collect()
}

fn parse_phi3(text: &str) -> Result<Vec<RawMessage>, ApiError> {
    let mut messages = Vec::new();
    let mut rest = text.trim_start().trim_start_matches("<s>");
    while !strip_trailers(rest, &["<|endoftext|>"]).trim().is_empty() {
        let (role, after) = ["system", "user", "assistant"]
            .iter()
            .find_map(|r| rest.trim_start().strip_prefix(&format!("<|{r}|>")).map(|a| (*r, a)))
            .ok_or_else(|| unparseable("Phi-3", &format!("unexpected text {:?}", clip(rest))))?;
        let (content, next) = after.split_once("<|end|>").unwrap_or((after, ""));
        messages.push(RawMessage {
            role: role.into(),
            content: strip_trailers(content, &["<|endoftext|>"]).trim().to_string(),
        });
        rest = next;
    }
    Ok(messages)
}

/// `<s>[INST] user [/INST] answer</s>[INST] ... [/INST] answer`
fn parse_mistral(text: &str) -> Result<Vec<RawMessage>, ApiError> {
    let mut messages = Vec::new();
    for turn in text.split("[INST]").skip(1) {
        let (user, answer) =
            turn.split_once("[/INST]").ok_or_else(|| unparseable("Mistral", "an [INST] without its [/INST]"))?;
        messages.push(RawMessage { role: "user".into(), content: user.trim().to_string() });
        let answer = strip_trailers(answer.split("</s>").next().unwrap_or_default(), &["<s>"]);
        messages.push(RawMessage { role: "assistant".into(), content: answer.trim().to_string() });
    }
    Ok(messages)
}

fn strip_trailers<'a>(mut s: &'a str, trailers: &[&str]) -> &'a str {
    loop {
        let trimmed = s.trim_end();
        match trailers.iter().find_map(|t| trimmed.strip_suffix(t)) {
            Some(shorter) => s = shorter,
            None => return s,
        }
    }
}

fn normalise_role(role: &str) -> String {
    match role {
        "model" => "assistant".into(),
        other => other.into(),
    }
}

fn unparseable(format: &str, why: &str) -> ApiError {
    ApiError::InvalidRequest(format!("cannot parse the query as {format} chat text: {why}"))
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(messages: &[RawMessage]) -> Vec<(&str, &str)> {
        messages.iter().map(|m| (m.role.as_str(), m.content.as_str())).collect()
    }

    #[test]
    fn llama3_with_doubled_bos_and_eos_padding() {
        let text = "<|begin_of_text|><|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
                    <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|end_of_text|><|end_of_text|>";
        assert_eq!(turns(&parse(text).unwrap()), [("user", "Hi"), ("assistant", "Hello!")]);
        // A response cut off before its end-of-turn token is still the response.
        let open = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHel";
        assert_eq!(turns(&parse(open).unwrap()), [("user", "Hi"), ("assistant", "Hel")]);
    }

    #[test]
    fn chatml_from_a_qwen_policy() {
        let text = "<|im_start|>system\nYou are Qwen.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n\
                    <|im_start|>assistant\n4<|im_end|>\n<|endoftext|>";
        assert_eq!(turns(&parse(text).unwrap()), [("system", "You are Qwen."), ("user", "2+2?"), ("assistant", "4")]);
    }

    #[test]
    fn gemma_phi3_and_mistral() {
        let gemma = "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHey<end_of_turn>\n";
        assert_eq!(turns(&parse(gemma).unwrap()), [("user", "Hi"), ("assistant", "Hey")]);
        let phi = "<|user|>\nHi<|end|>\n<|assistant|>\nHey<|end|>\n<|endoftext|>";
        assert_eq!(turns(&parse(phi).unwrap()), [("user", "Hi"), ("assistant", "Hey")]);
        let mistral = "<s>[INST] Hi [/INST] Hey</s>[INST] Bye [/INST] Ciao</s>";
        assert_eq!(
            turns(&parse(mistral).unwrap()),
            [("user", "Hi"), ("assistant", "Hey"), ("user", "Bye"), ("assistant", "Ciao")]
        );
    }

    #[test]
    fn unparseable_text_names_the_problem() {
        let err = parse("just some text").unwrap_err().to_string();
        assert!(err.contains("no Llama-3, ChatML"), "{err}");
        let err = parse("junk <|im_start|>user\nhi<|im_end|>").unwrap_err().to_string();
        assert!(err.contains("text before the first turn"), "{err}");
    }
}

//! The model's own chat template (Jinja, from `tokenizer_config.json`), rendered with minijinja under
//! the same settings transformers uses, so any model's template works, not only Llama-3's.

use std::path::Path;

use minijinja::value::{Kwargs, Value};
use minijinja::{context, Environment, Error as JinjaError, ErrorKind, State};
use serde::Serialize;

use crate::error::{ModelError, Result};
use crate::text::conversation::Message;
use crate::text::pystr::{self, Ends};

pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: String, bos_token: String, eos_token: String) -> Result<Self> {
        let mut env = Environment::new();
        // transformers compiles chat templates with trim_blocks and lstrip_blocks on.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(python_methods);
        env.add_filter("trim", |s: &str, chars: Option<&str>| pystr::strip(s, chars, Ends::Both).to_string());
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source).map_err(|e| ModelError::Template(e.to_string()))?;
        Ok(Self { env, bos_token, eos_token })
    }

    /// Reads the template and special tokens from a checkpoint's tokenizer files.
    pub fn from_files(tokenizer_config: &Path, chat_template: Option<&Path>) -> Result<Self> {
        let text = std::fs::read_to_string(tokenizer_config).map_err(|e| ModelError::io(tokenizer_config, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|source| ModelError::Json { path: tokenizer_config.display().to_string(), source })?;
        let source = match chat_template {
            Some(path) => std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?,
            None => template_source(&json)
                .ok_or_else(|| ModelError::Template(format!("{} has no chat_template", tokenizer_config.display())))?,
        };
        Self::new(source, special_token(&json, "bos_token"), special_token(&json, "eos_token"))
    }

    /// The BOS token's text (empty when the tokenizer has none).
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The prompt as the model saw it in training: the whole conversation, no generation prompt.
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        #[derive(Serialize)]
        struct Msg<'a> {
            role: &'a str,
            content: &'a str,
        }
        let messages: Vec<Msg> = messages.iter().map(|m| Msg { role: m.role.as_str(), content: &m.content }).collect();
        let template = self.env.get_template("chat").map_err(|e| ModelError::Template(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
                add_generation_prompt => false,
            })
            .map_err(|e| ModelError::Template(e.to_string()))
    }
}

/// Python's string methods (minijinja-contrib's pycompat), with `strip`/`lstrip`/`rstrip` using
/// Python's whitespace set rather than Rust's.
fn python_methods(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, JinjaError> {
    let ends = match method {
        "strip" => Ends::Both,
        "lstrip" => Ends::Start,
        "rstrip" => Ends::End,
        _ => return minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    };
    let Some(s) = value.as_str() else {
        return minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args);
    };
    let (chars, kwargs): (Option<&str>, Kwargs) = minijinja::value::from_args(args)?;
    kwargs.assert_all_used()?;
    Ok(Value::from(pystr::strip(s, chars, ends)))
}

/// `chat_template` is a string, or a list of named templates of which "default" is the one to use.
fn template_source(json: &serde_json::Value) -> Option<String> {
    match json.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(named) => named
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
        _ => None,
    }
}

/// Special tokens are stored either as plain strings or as AddedToken objects with a `content`.
fn special_token(json: &serde_json::Value, key: &str) -> String {
    match json.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(obj) => obj.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::conversation::Role;

    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    fn msg(role: Role, content: &str) -> Message {
        Message { role, content: content.into() }
    }

    #[test]
    fn llama3_template_renders_bos_once_and_trims() {
        let t = ChatTemplate::new(LLAMA3.into(), "<|begin_of_text|>".into(), "<|eot_id|>".into()).unwrap();
        let text = t.render(&[msg(Role::User, "  hi \n"), msg(Role::Assistant, "hello")]).unwrap();
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nhello<|eot_id|>"
        );
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}\
                   {% for m in messages %}{{ m['content'].strip().upper() }}|{% endfor %}";
        let t = ChatTemplate::new(src.into(), String::new(), String::new()).unwrap();
        assert_eq!(t.render(&[msg(Role::User, " a "), msg(Role::Assistant, "b")]).unwrap(), "A|B|");
        let err = t.render(&[msg(Role::Assistant, "b")]).unwrap_err();
        assert!(err.to_string().contains("user first"), "{err}");
    }

    #[test]
    fn named_templates_and_added_token_objects_are_read() {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "y"}],
                "bos_token": {"content": "<s>", "lstrip": false}}"#,
        )
        .unwrap();
        assert_eq!(template_source(&json).as_deref(), Some("y"));
        assert_eq!(special_token(&json, "bos_token"), "<s>");
        assert_eq!(special_token(&json, "eos_token"), "");
    }
}

//! `taskflow chat`: the assistant in a terminal, against a running server. One line per
//! message; `/history` shows the conversation so far, `/new` starts another, `/quit` ends.
//!
//! At a terminal the input line can be edited, and the arrow keys recall earlier lines,
//! also from earlier runs (kept in a history file); replies are coloured unless `NO_COLOR`
//! is set. From a pipe it reads one message per line and prints plain text, so it can be
//! scripted.

use std::{
    io::{BufRead as _, IsTerminal as _},
    path::PathBuf,
    process::ExitCode,
};

use reqwest::{Method, StatusCode};
use rustyline::{Config, DefaultEditor, error::ReadlineError};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use crate::cli::ChatOpts;

/// Lines kept in the history file.
const HISTORY_LINES: usize = 1000;
/// Tries of one request that the server's rate limit turns away, before the 429 is shown.
const RATE_LIMIT_ATTEMPTS: u32 = 5;

struct Style {
    on: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` (<https://no-color.org>) is unset.
    fn detect() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            on: std::io::stdout().is_terminal() && !no_color,
        }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("taskflow: {msg}");
    ExitCode::from(2)
}

/// A signed-in connection to the server.
struct Session {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Session {
    async fn sign_in(base: &str, email: &str, password: &SecretString) -> Result<Self, String> {
        let mut session = Self {
            client: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token: String::new(),
        };
        let body = json!({"email": email, "password": password.expose_secret()});
        let (status, v) = session
            .send(Method::POST, "/api/auth/login", Some(&body), false)
            .await?;
        session.token = outcome(status, v)?["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(session)
    }

    /// One signed-in request.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let (status, v) = self.send(method, path, body, true).await?;
        outcome(status, v)
    }

    /// One request. A 429 (too many messages too fast, e.g. lines piped in) is refused
    /// before anything happens, so it is sent again after the `Retry-After` it names.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        auth: bool,
    ) -> Result<(StatusCode, Value), String> {
        let mut attempts = 0;
        loop {
            let mut req = self
                .client
                .request(method.clone(), format!("{}{path}", self.base));
            if auth {
                req = req.bearer_auth(&self.token);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let res = req
                .send()
                .await
                .map_err(|e| format!("cannot reach the server: {e}"))?;
            let status = res.status();
            attempts += 1;
            if status == StatusCode::TOO_MANY_REQUESTS && attempts < RATE_LIMIT_ATTEMPTS {
                let wait = res
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(1)
                    .clamp(1, 60);
                tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                continue;
            }
            return Ok((status, res.json().await.unwrap_or(Value::Null)));
        }
    }
}

/// The body of a success, else the problem's detail.
fn outcome(status: StatusCode, body: Value) -> Result<Value, String> {
    if status.is_success() {
        Ok(body)
    } else {
        Err(body["detail"]
            .as_str()
            .map_or_else(|| status.to_string(), str::to_owned))
    }
}

/// Where typed lines come from: a line editor at a terminal, plain lines from a pipe.
enum Input {
    Editor {
        editor: Box<DefaultEditor>,
        file: Option<PathBuf>,
    },
    Lines(std::io::Lines<std::io::StdinLock<'static>>),
}

impl Input {
    fn open(history: Option<PathBuf>) -> Self {
        if !std::io::stdin().is_terminal() {
            return Self::Lines(std::io::stdin().lock().lines());
        }
        let config = Config::builder()
            .max_history_size(HISTORY_LINES)
            .and_then(|c| c.history_ignore_dups(true))
            .map(|c| c.auto_add_history(true).build())
            .unwrap_or_default();
        let Ok(mut editor) = DefaultEditor::with_config(config) else {
            return Self::Lines(std::io::stdin().lock().lines());
        };
        if let Some(path) = &history {
            // A missing file is a first run; anything else is worth a word but not a stop.
            if let Err(e) = editor.load_history(path)
                && path.exists()
            {
                eprintln!(
                    "taskflow: cannot read the chat history {}: {e}",
                    path.display()
                );
            }
        }
        Self::Editor {
            editor: Box::new(editor),
            file: history,
        }
    }

    /// The next line, `None` at the end of input (Ctrl-D). Ctrl-C drops the line being typed.
    fn next(&mut self, prompt: &str) -> Option<String> {
        match self {
            Self::Lines(lines) => lines.next()?.ok(),
            Self::Editor { editor, file } => loop {
                match editor.readline(prompt) {
                    Ok(line) => {
                        if let Some(path) = file {
                            // Kept as it is typed, so a killed terminal loses nothing.
                            if let Some(dir) = path.parent() {
                                let _ = std::fs::create_dir_all(dir);
                            }
                            let _ = editor.append_history(path);
                        }
                        return Some(line);
                    }
                    Err(ReadlineError::Interrupted) => continue,
                    Err(_) => return None,
                }
            },
        }
    }
}

/// `$XDG_STATE_HOME/taskflow/chat_history`, else `~/.local/state/taskflow/chat_history`.
fn default_history_file() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("taskflow").join("chat_history"))
}

pub async fn run(opts: ChatOpts) -> ExitCode {
    let interactive = std::io::stdin().is_terminal();
    let password = match opts.password {
        Some(p) => p,
        None if interactive => {
            match rpassword::prompt_password(format!("password for {}: ", opts.email)) {
                Ok(p) => SecretString::from(p),
                Err(e) => return fail(format_args!("cannot read the password: {e}")),
            }
        }
        None => return fail("no password: pass --password or set TASKFLOW_PASSWORD"),
    };
    let session = match Session::sign_in(&opts.url, &opts.email, &password).await {
        Ok(s) => s,
        Err(e) => return fail(format_args!("cannot sign in at {}: {e}", opts.url)),
    };
    let style = Style::detect();
    let mut conversation = opts.conversation.clone();
    if opts.resume {
        match session.call(Method::GET, "/api/conversations", None).await {
            Ok(v) => conversation = v["items"][0]["id"].as_str().map(str::to_owned),
            Err(e) => return fail(format_args!("cannot list your conversations: {e}")),
        }
    }
    if interactive {
        let resumed = if conversation.is_some() {
            "Continuing. "
        } else {
            ""
        };
        println!(
            "{}",
            style.paint(
                "2",
                &format!("Signed in. {resumed}Say “help” for examples; /history, /new, /quit.")
            )
        );
    }
    let prompt = if interactive {
        format!("{} ", style.paint("1;32", "you ›"))
    } else {
        String::new()
    };
    let mut input = Input::open(opts.history_file.or_else(default_history_file));
    while let Some(line) = input.next(&prompt) {
        match line.trim() {
            "" => {}
            "/quit" | "/exit" => break,
            "/new" => {
                conversation = None;
                println!("{}", style.paint("2", "(a new conversation)"));
            }
            "/history" => {
                let Some(id) = &conversation else {
                    println!("{}", style.paint("2", "(nothing yet)"));
                    continue;
                };
                let path = format!("/api/conversations/{id}/messages");
                match session.call(Method::GET, &path, None).await {
                    Ok(body) => {
                        for m in body["items"].as_array().into_iter().flatten() {
                            let who = if m["role"] == "user" {
                                style.paint("32", "you")
                            } else {
                                style.paint("36", "taskflow")
                            };
                            println!("{who}: {}", m["content"].as_str().unwrap_or_default());
                        }
                    }
                    Err(e) => println!("{} {e}", style.paint("1;31", "error ›")),
                }
            }
            message => {
                let mut body = json!({"message": message});
                if let Some(id) = &conversation {
                    body["conversation_id"] = json!(id);
                }
                match session.call(Method::POST, "/api/chat", Some(&body)).await {
                    Ok(v) => {
                        conversation = v["conversation_id"].as_str().map(str::to_owned);
                        println!(
                            "{} {}",
                            style.paint("1;36", "taskflow ›"),
                            v["response"].as_str().unwrap_or_default()
                        );
                    }
                    Err(e) => println!("{} {e}", style.paint("1;31", "error ›")),
                }
            }
        }
    }
    ExitCode::SUCCESS
}

//! `taskflow chat`: the assistant in a terminal, against a running server. One line per
//! message; `/history` shows the conversation so far, `/new` starts another, `/quit` ends.

use std::{
    io::{BufRead as _, IsTerminal as _, Write as _},
    process::ExitCode,
};

use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use crate::cli::ChatOpts;

struct Style {
    on: bool,
}

impl Style {
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

async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Result<Value, String> {
    let mut req = client.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req
        .send()
        .await
        .map_err(|e| format!("cannot reach the server: {e}"))?;
    let status = res.status();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(v)
    } else {
        Err(v["detail"].as_str().unwrap_or(status.as_str()).to_owned())
    }
}

pub async fn run(opts: ChatOpts) -> ExitCode {
    let client = reqwest::Client::new();
    let base = opts.url.trim_end_matches('/').to_owned();
    let login = post(
        &client,
        format!("{base}/api/auth/login"),
        None,
        json!({"email": opts.email, "password": opts.password.expose_secret()}),
    )
    .await;
    let token = match login {
        Ok(v) => v["token"].as_str().unwrap_or_default().to_owned(),
        Err(e) => return fail(format_args!("cannot sign in at {base}: {e}")),
    };
    let style = Style {
        on: std::io::stdout().is_terminal(),
    };
    let interactive = std::io::stdin().is_terminal();
    let mut conversation = opts.conversation.clone();
    if interactive {
        println!(
            "{}",
            style.paint(
                "2",
                "Signed in. Say “help” for examples; /history, /new, /quit."
            )
        );
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("{} ", style.paint("1;32", "you ›"));
            let _ = std::io::stdout().flush();
        }
        let Some(Ok(line)) = lines.next() else { break };
        let line = line.trim().to_owned();
        match line.as_str() {
            "" => continue,
            "/quit" | "/exit" => break,
            "/new" => {
                conversation = None;
                println!("{}", style.paint("2", "(a new conversation)"));
                continue;
            }
            "/history" => {
                let Some(id) = &conversation else {
                    println!("{}", style.paint("2", "(nothing yet)"));
                    continue;
                };
                let res = client
                    .get(format!("{base}/api/conversations/{id}/messages"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                let body: Value = match res {
                    Ok(r) => r.json().await.unwrap_or(Value::Null),
                    Err(e) => return fail(format_args!("cannot reach the server: {e}")),
                };
                for m in body["items"].as_array().into_iter().flatten() {
                    let who = if m["role"] == "user" {
                        style.paint("32", "you")
                    } else {
                        style.paint("36", "taskflow")
                    };
                    println!("{who}: {}", m["content"].as_str().unwrap_or_default());
                }
                continue;
            }
            _ => {}
        }
        let mut body = json!({"message": line});
        if let Some(id) = &conversation {
            body["conversation_id"] = json!(id);
        }
        match post(&client, format!("{base}/api/chat"), Some(&token), body).await {
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
    ExitCode::SUCCESS
}

//! The assistant through the real binary: a whole conversation, ambiguity answered with a
//! number, memory that survives a restart, and bad input answered clearly.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use taskflow_testkit::TestServer;

use crate::{App, BIN};

async fn say(app: &App, conversation: Option<&str>, message: &str) -> Value {
    let mut body = json!({"message": message});
    if let Some(c) = conversation {
        body["conversation_id"] = json!(c);
    }
    let res = app.post("/api/chat", body).await;
    assert_eq!(res.status, 200, "{message:?}: {}", res.body);
    res.body
}

fn tools(reply: &Value) -> Vec<&str> {
    reply["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tool"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_conversation_adds_lists_and_completes_a_recurring_task_and_survives_a_restart() {
    let Some(app) = App::new().await else { return };
    let first = say(
        &app,
        None,
        "add pay rent every month on the 1st at 9am, high priority #bills remind me 1 hour before",
    )
    .await;
    let cid = first["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(tools(&first), ["add_task"]);
    let reply = first["response"].as_str().unwrap();
    assert!(reply.starts_with("Added #1 “pay rent” — due "), "{reply}");
    assert!(
        reply.contains("9:00 AM")
            && reply.contains("repeats monthly on the 1st")
            && reply.contains("high priority"),
        "{reply}"
    );
    let task = &first["tool_calls"][0]["result"];
    assert_eq!(task["recurrence"], "FREQ=MONTHLY;BYMONTHDAY=1");
    assert_eq!(task["priority"], "high");
    assert_eq!(task["tags"], json!(["bills"]));
    assert_eq!(task["reminders"][0]["before_minutes"], 60);
    assert!(
        task["due_at"].as_str().unwrap().ends_with("T14:00:00Z"),
        "9:00 New York: {}",
        task["due_at"]
    );

    let list = say(&app, Some(&cid), "show my tasks").await;
    assert_eq!(tools(&list), ["list_tasks"]);
    assert!(
        list["response"].as_str().unwrap().contains("#1 “pay rent”"),
        "{}",
        list["response"]
    );

    // The server restarts; the conversation remembers which task "it" is.
    let App {
        server,
        db,
        token,
        user,
    } = app;
    server.kill9();
    let app = App {
        server: TestServer::start(BIN, &db.url, &[]),
        db,
        token,
        user,
    };
    let done = say(&app, Some(&cid), "mark it as done").await;
    assert_eq!(tools(&done), ["complete_task"]);
    assert_eq!(done["tool_calls"][0]["args"]["task_id"], 1);
    assert!(
        done["response"]
            .as_str()
            .unwrap()
            .starts_with("Completed #1"),
        "{}",
        done["response"]
    );
    // The recurring service creates the next occurrence.
    // Through a broker the killed relay's lease expires first (10 s).
    let wait = if crate::through_broker() { 12 } else { 5 };
    let deadline = Instant::now() + Duration::from_secs(wait);
    let next = loop {
        let page = app.get("/api/tasks?status=pending").await;
        if let Some(t) = page.body["items"]
            .as_array()
            .and_then(|i| i.first())
            .cloned()
        {
            break t;
        }
        assert!(Instant::now() < deadline, "no next occurrence");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(next["number"], 2);
    assert_eq!(next["title"], "pay rent");

    let convos = app.get("/api/conversations").await;
    assert_eq!(convos.body["items"][0]["id"], cid.as_str());
    let msgs = app.get(&format!("/api/conversations/{cid}/messages")).await;
    let items = msgs.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 6, "three exchanges");
    assert_eq!(items[0]["role"], "user");
    assert_eq!(items[1]["role"], "assistant");
    assert_eq!(items[1]["tool_calls"][0]["tool"], "add_task");
}

#[tokio::test]
async fn ambiguity_is_answered_with_a_number_and_a_missing_task_gets_a_helpful_reply() {
    let Some(app) = App::new().await else { return };
    let c = say(&app, None, "add buy milk tomorrow").await;
    let cid = c["conversation_id"].as_str().unwrap().to_owned();
    say(&app, Some(&cid), "add buy milk and eggs on friday").await;
    let ask = say(&app, Some(&cid), "done with buy milk").await;
    let text = ask["response"].as_str().unwrap();
    assert!(
        text.contains("1. #1") && text.contains("2. #2") && text.contains("Which one?"),
        "{text}"
    );
    let picked = say(&app, Some(&cid), "the second one").await;
    assert_eq!(tools(&picked), ["complete_task"]);
    assert_eq!(picked["tool_calls"][0]["args"]["task_id"], 2);
    let t2 = app.get(&format!("/api/{}/tasks/2", app.user_id())).await;
    assert_eq!(t2.body["status"], "completed");
    let t1 = app.get(&format!("/api/{}/tasks/1", app.user_id())).await;
    assert_eq!(t1.body["status"], "pending");

    let missing = say(&app, Some(&cid), "complete task 99").await;
    assert!(
        missing["response"]
            .as_str()
            .unwrap()
            .contains("There is no task #99"),
        "{}",
        missing["response"]
    );
    let nothing = say(&app, Some(&cid), "delete the spaceship task").await;
    assert!(
        nothing["response"]
            .as_str()
            .unwrap()
            .contains("couldn't find a task matching"),
        "{}",
        nothing["response"]
    );
    assert_eq!(app.counts().await.0, 2, "nothing was deleted");
}

#[tokio::test]
async fn reminders_and_tags_go_on_existing_tasks_and_a_missing_due_time_is_asked_for() {
    // More messages than the chat limit's burst; the limit has its own test.
    let Some(app) = App::with_args(&["--rate-limit-chat-per-user", "0"]).await else {
        return;
    };
    let reply = |v: &Value| v["response"].as_str().unwrap().to_owned();
    // By number, through the compatibility route.
    let task_path = |n: i64| format!("/api/{}/tasks/{n}", app.user_id());
    let first = say(&app, None, "remind me to call mom").await;
    let cid = first["conversation_id"].as_str().unwrap().to_owned();
    let text = reply(&first);
    assert!(text.starts_with("Added #1 “call mom”."), "{text}");
    assert!(
        text.contains("no due time, so there is no reminder yet"),
        "{text}"
    );
    let task = app.get(&task_path(1)).await.body;
    assert_eq!(task["reminders"], json!([]), "{task}");

    let text = reply(&say(&app, Some(&cid), "remind me about it tomorrow at 9am").await);
    assert!(text.starts_with("Updated #1 “call mom” — due "), "{text}");
    assert!(text.contains("reminder at the due time"), "{text}");
    let task = app.get(&task_path(1)).await.body;
    assert_eq!(task["reminders"].as_array().unwrap().len(), 1, "{task}");

    say(&app, Some(&cid), "add renew passport").await;
    let before = app.get(&task_path(2)).await.body;
    let text = reply(
        &say(
            &app,
            Some(&cid),
            "remind me about the passport a day before",
        )
        .await,
    );
    assert!(
        text.starts_with("#2 “renew passport” has no due date or time"),
        "{text}"
    );
    assert_eq!(app.get(&task_path(2)).await.body, before, "nothing changed");
    say(&app, Some(&cid), "move #2 to dec 15").await;
    let text = reply(&say(&app, Some(&cid), "set a reminder for #2 a day before").await);
    assert!(text.contains("reminder 1 day before"), "{text}");
    let text = reply(&say(&app, Some(&cid), "tag it with travel and documents").await);
    assert!(text.contains("#travel #documents"), "{text}");
    let task = app.get(&task_path(2)).await.body;
    assert_eq!(task["tags"], json!(["travel", "documents"]), "{task}");

    let counts = app.counts().await;
    assert_eq!(
        reply(&say(&app, Some(&cid), "thanks!").await),
        "You're welcome!"
    );
    assert!(reply(&say(&app, Some(&cid), "hi").await).starts_with("Hello!"));
    assert_eq!(app.counts().await, counts, "small talk changes nothing");

    say(&app, Some(&cid), "complete #1").await;
    let counts = app.counts().await;
    let text = reply(&say(&app, Some(&cid), "complete #1").await);
    assert_eq!(text, "#1 “call mom” is already done.");
    let text = reply(&say(&app, Some(&cid), "reopen #2").await);
    assert_eq!(
        text,
        "#2 “renew passport” is not completed, so it is already open."
    );
    assert_eq!(app.counts().await, counts, "nothing to do changes nothing");
}

#[tokio::test]
async fn a_new_time_keeps_the_day_and_completed_tasks_can_be_cleared() {
    let Some(app) = App::with_args(&["--rate-limit-chat-per-user", "0"]).await else {
        return;
    };
    let reply = |v: &Value| v["response"].as_str().unwrap().to_owned();
    // Days ahead of today (in the user's zone, give or take a day), named by month and day.
    let today = (chrono::Utc::now() - chrono::TimeDelta::hours(5)).date_naive();
    let (dentist, trip) = (
        today + chrono::TimeDelta::days(10),
        today + chrono::TimeDelta::days(20),
    );
    let first = say(
        &app,
        None,
        &format!("add dentist on {} at 8:15am", dentist.format("%B %-d")),
    )
    .await;
    let cid = first["conversation_id"].as_str().unwrap().to_owned();
    let text = reply(&say(&app, Some(&cid), "change it to 3pm").await);
    assert_eq!(
        text,
        format!(
            "Updated #1 “dentist” — due {}, 3:00 PM.",
            dentist.format("%a %b %-d")
        )
    );
    say(
        &app,
        Some(&cid),
        &format!("add pack for the trip on {}", trip.format("%b %-d")),
    )
    .await;
    let text = reply(&say(&app, Some(&cid), "move it to 7am").await);
    assert_eq!(
        text,
        format!(
            "Updated #2 “pack for the trip” — due {}, 7:00 AM.",
            trip.format("%a %b %-d")
        ),
        "an all-day task gets the time on its day"
    );

    let text = reply(&say(&app, Some(&cid), "how many tasks do I have?").await);
    assert!(text.starts_with("2 tasks:"), "{text}");
    let on = format!("what's on {}?", dentist.format("%A %b %-d")).to_lowercase();
    let text = reply(&say(&app, Some(&cid), &on).await);
    assert!(
        text.starts_with("1 task:") && text.contains("dentist"),
        "{text}"
    );
    let counts = app.counts().await;
    for batch in ["mark all done", "postpone everything to monday"] {
        let text = reply(&say(&app, Some(&cid), batch).await);
        assert!(text.starts_with("I change one task at a time"), "{text}");
    }
    assert_eq!(app.counts().await, counts, "nothing changed");
    say(&app, Some(&cid), "complete #1").await;
    say(&app, Some(&cid), "complete #2").await;
    say(&app, Some(&cid), "add buy stamps").await;
    let text = reply(&say(&app, Some(&cid), "clear completed tasks").await);
    assert!(text.contains("2 tasks"), "lists what would go: {text}");
    assert!(
        text.contains("dentist") && !text.contains("stamps"),
        "{text}"
    );
    let text = reply(&say(&app, Some(&cid), "yes").await);
    assert!(text.starts_with("Deleted 2 tasks"), "{text}");
    let left = app.get("/api/tasks?status=all").await.body;
    let titles: Vec<&str> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["buy stamps"]);
}

#[tokio::test]
async fn bad_messages_get_a_clear_reply_and_change_nothing() {
    let Some(app) = App::new().await else { return };
    let before = app.counts().await;
    let long = "a".repeat(10_000);
    for (message, expect) in [
        ("", "empty"),
        ("   \n\t ", "empty"),
        (long.as_str(), "10000 characters"),
        ("\u{1}\u{2}\u{3}\u{7f}", "did not understand"),
        ("¿Qué tiempo hace mañana?", "did not understand"),
        ("今日の天気は？", "did not understand"),
        ("what's the weather like?", "did not understand"),
    ] {
        let reply = say(&app, None, message).await;
        let text = reply["response"].as_str().unwrap();
        assert!(text.contains(expect), "{message:?} → {text}");
        assert!(reply["tool_calls"].as_array().unwrap().is_empty());
    }
    assert_eq!(app.counts().await, before, "nothing changed");
    // Malformed requests are problems, not replies.
    app.post("/api/chat", json!({"conversation_id": "x"}))
        .await
        .problem(422);
    app.post(
        "/api/chat",
        json!({"message": "help", "conversation_id": "no-such"}),
    )
    .await
    .problem(404);
    let help = say(&app, None, "help").await;
    assert!(
        help["response"].as_str().unwrap().contains("add pay rent"),
        "{}",
        help["response"]
    );
    // Another user's conversation is not found; the compatibility route checks the user id.
    let mine = say(&app, None, "show my tasks").await;
    let (other, other_user) = app.server.signup("eve@example.com", "UTC").await;
    let cid = mine["conversation_id"].as_str().unwrap();
    app.call_as(
        &other,
        Method::GET,
        &format!("/api/conversations/{cid}/messages"),
        None,
        &[],
    )
    .await
    .problem(404);
    let path = format!("/api/{}/chat", app.user_id());
    app.call_as(
        &other,
        Method::POST,
        &path,
        Some(json!({"message": "help"})),
        &[],
    )
    .await
    .problem(403);
    let own = format!("/api/{}/chat", other_user["id"].as_str().unwrap());
    let res = app
        .call_as(
            &other,
            Method::POST,
            &own,
            Some(json!({"message": "help"})),
            &[],
        )
        .await;
    assert_eq!(res.status, 200);
}

#[tokio::test]
async fn the_terminal_chat_signs_in_and_talks_to_the_server() {
    use std::io::Write as _;
    let Some(app) = App::new().await else { return };
    let mut child = std::process::Command::new(BIN)
        .args([
            "chat",
            "--url",
            &app.server.base,
            "--email",
            "ada@example.com",
        ])
        .env("TASKFLOW_PASSWORD", "correct horse battery")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"add water the plants tomorrow at 8am\nshow my tasks\n/history\n/quit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("taskflow › Added #1 “water the plants”"),
        "{stdout}"
    );
    assert!(stdout.contains("1 task:"), "{stdout}");
    assert!(
        stdout.contains("you: show my tasks"),
        "the history: {stdout}"
    );
    assert!(!stdout.contains("\x1b["), "no colour when not a terminal");
    // A wrong password is one line and status 2.
    let bad = std::process::Command::new(BIN)
        .args([
            "chat",
            "--url",
            &app.server.base,
            "--email",
            "ada@example.com",
            "--password",
            "wrong password",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot sign in"));
    // Without a terminal to ask at, a missing password is named.
    let none = std::process::Command::new(BIN)
        .args([
            "chat",
            "--url",
            &app.server.base,
            "--email",
            "ada@example.com",
        ])
        .env_remove("TASKFLOW_PASSWORD")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no password"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
}

/// `taskflow chat` on a pseudo-terminal (by `script`), fed keystrokes, its output collected.
struct Terminal {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Terminal {
    fn open(args: &str, envs: &[(&str, &str)]) -> Self {
        use std::io::Read as _;
        let mut child = std::process::Command::new("script")
            .args([
                "-q",
                "-e",
                "-c",
                &format!("'{BIN}' chat {args}"),
                "/dev/null",
            ])
            .env_remove("TASKFLOW_PASSWORD")
            .env_remove("NO_COLOR")
            .env("TERM", "xterm")
            .envs(envs.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux runs the chat on a terminal");
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdin = child.stdin.take().unwrap();
        Self { child, stdin, out }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until the output shows `text` this many times.
    fn wait_for(&self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.text().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn keys(&mut self, keys: &str) {
        use std::io::Write as _;
        self.stdin.write_all(keys.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn quit(mut self) -> String {
        self.keys("/quit\r");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "still running: {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.text()
    }
}

#[tokio::test]
async fn at_a_terminal_the_chat_asks_for_the_password_and_recalls_earlier_lines() {
    let Some(app) = App::new().await else { return };
    let home = tempfile::tempdir().unwrap();
    let home_dir = home.path().to_str().unwrap();
    let envs = [
        ("TASKFLOW_URL", app.server.base.as_str()),
        ("TASKFLOW_EMAIL", "ada@example.com"),
        ("HOME", home_dir),
        ("XDG_STATE_HOME", ""),
    ];
    let mut t = Terminal::open("", &envs);
    t.wait_for("password for ada@example.com: ", 1);
    t.keys("correct horse battery\r");
    t.wait_for("Signed in. Say", 1);
    t.keys("add water the plants tomorrow at 8am\r");
    t.wait_for("Added #1", 1);
    // The up arrow brings the line back; Enter sends it again.
    t.keys("\x1b[A\r");
    t.wait_for("Added #2", 1);
    let out = t.quit();
    assert!(
        out.contains("\x1b[1;36mtaskflow ›\x1b[0m Added #1 “water the plants”"),
        "replies are coloured at a terminal: {out:?}"
    );
    assert!(
        !out.contains("correct horse battery"),
        "the password is not echoed"
    );
    let history_file = home.path().join(".local/state/taskflow/chat_history");
    let history = std::fs::read_to_string(&history_file).expect("the typed lines are kept");
    assert!(
        history.contains("add water the plants tomorrow at 8am\n/quit"),
        "{history}"
    );
    assert!(
        !history.contains("correct horse"),
        "the password is not in the history"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&history_file).unwrap().permissions(),
    );
    assert_eq!(
        mode & 0o077,
        0,
        "only its owner reads the history: {mode:o}"
    );

    // The next run recalls lines from the last one and continues its conversation;
    // NO_COLOR turns the colours off.
    let mut t = Terminal::open(
        "--continue --password 'correct horse battery'",
        &[envs.as_slice(), &[("NO_COLOR", "1")]].concat(),
    );
    t.wait_for("Signed in. Continuing.", 1);
    t.keys("\x1b[A\x1b[A\r");
    t.wait_for("Added #3 “water the plants”", 1);
    t.keys("/history\r");
    t.wait_for("you: add water the plants tomorrow at 8am", 3);
    let out = t.quit();
    assert!(!out.contains("\x1b[1;36m"), "NO_COLOR: {out:?}");
    let listed = app.get("/api/tasks").await.body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 3, "{listed}");
}

#[tokio::test]
async fn a_bulk_delete_asks_for_confirmation_first() {
    let Some(app) = App::new().await else { return };
    let c = say(&app, None, "add pay gas bill").await;
    let cid = c["conversation_id"].as_str().unwrap().to_owned();
    say(&app, Some(&cid), "add pay water bill").await;
    say(&app, Some(&cid), "add call the landlord").await;
    say(&app, Some(&cid), "complete #1").await;
    say(&app, Some(&cid), "complete #2").await;
    let ask = say(&app, Some(&cid), "delete all completed tasks").await;
    let text = ask["response"].as_str().unwrap();
    assert!(
        text.contains("This would delete 2 tasks") && text.contains("“yes”"),
        "{text}"
    );
    assert_eq!(tools(&ask), ["list_tasks"], "nothing deleted yet");
    let no = say(&app, Some(&cid), "no").await;
    assert!(
        no["response"]
            .as_str()
            .unwrap()
            .contains("nothing was deleted")
    );
    assert_eq!(app.counts().await.0, 3);
    say(&app, Some(&cid), "delete all completed tasks").await;
    let yes = say(&app, Some(&cid), "yes").await;
    assert_eq!(yes["response"], "Deleted 2 tasks.");
    assert_eq!(tools(&yes), ["delete_task", "delete_task"]);
    assert_eq!(app.counts().await.0, 1, "only the open task is left");
}

#[tokio::test]
async fn chat_is_rate_limited_per_user() {
    let Some(app) =
        App::with_args(&["--rate-limit-chat-per-user", "1", "--rate-limit-burst", "1"]).await
    else {
        return;
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.post("/api/chat", json!({"message": "help"})).await);
    }
    let limited = statuses
        .iter()
        .find(|r| r.status == 429)
        .expect("a 429 among 4 quick messages");
    limited.problem(429);
    assert!(limited.headers.contains_key("retry-after"));
    // Other requests of the same user are not held back by the chat limit.
    assert_eq!(app.get("/api/tasks").await.status, 200);
    // The terminal chat waits out the limit instead of dropping piped lines.
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "printf 'add one\\nadd two\\nadd three\\n' | \"$0\" chat --url \"$1\" --email ada@example.com",
            BIN,
            &app.server.base,
        ])
        .env("TASKFLOW_PASSWORD", "correct horse battery")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for added in ["Added #1 “one”", "Added #2 “two”", "Added #3 “three”"] {
        assert!(stdout.contains(added), "{stdout}");
    }
    assert!(!stdout.contains("error ›"), "{stdout}");
}

/// Makes the database refuse the conversation record of every message that says `marker`,
/// as a full disk or a dropped connection would refuse it, on the backend under test.
pub async fn refuse_records_saying(app: &App, marker: &str) {
    let sql = if app.db.is_postgres() {
        format!(
            "CREATE FUNCTION refuse_record() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.content LIKE '%{marker}%' THEN RAISE EXCEPTION 'the record cannot be written'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_record BEFORE INSERT ON messages \
             FOR EACH ROW EXECUTE FUNCTION refuse_record();"
        )
    } else {
        format!(
            "CREATE TRIGGER refuse_record BEFORE INSERT ON messages \
             WHEN NEW.content LIKE '%{marker}%' \
             BEGIN SELECT RAISE(ABORT, 'the record cannot be written'); END;"
        )
    };
    app.db.execute(&sql).await;
}

#[tokio::test]
async fn a_message_whose_record_cannot_be_written_changes_no_task() {
    let Some(app) = App::new().await else { return };
    refuse_records_saying(&app, "oat milk").await;
    let before = app.counts().await;
    let message = "add buy oat milk tomorrow";
    let res = app.post("/api/chat", json!({"message": message})).await;
    res.problem(500);
    assert_eq!(
        app.counts().await,
        before,
        "no task and no event: the task and the record of the message are one outcome"
    );
    let convos = app.get("/api/conversations").await;
    assert_eq!(convos.body["items"], json!([]), "{}", convos.body);
    // A client that sends the message again once the fault is gone gets one task, not two.
    let drop = if app.db.is_postgres() {
        "DROP TRIGGER refuse_record ON messages"
    } else {
        "DROP TRIGGER refuse_record"
    };
    app.db.execute(drop).await;
    let reply = say(&app, None, message).await;
    assert_eq!(tools(&reply), ["add_task"]);
    assert_eq!(app.counts().await.0, 1);
}

/// The families people use instead of commands, through `POST /api/chat`: each reply and
/// what it did to the tasks.
#[tokio::test]
async fn questions_statements_marks_and_filters_in_words_act_on_the_right_tasks() {
    let Some(app) = App::with_args(&["--rate-limit-chat-per-user", "0"]).await else {
        return;
    };
    // Each task by its number (what the assistant says) and its id (what the API reads).
    let numbered = |v: &Value| {
        (
            v["number"].as_i64().unwrap(),
            v["id"].as_str().unwrap().to_owned(),
        )
    };
    let report = numbered(
        &app.task(json!({"title": "finish the report", "priority": "high", "tags": ["work"]}))
            .await,
    );
    let bill = numbered(
        &app.task(json!({"title": "pay the electricity bill", "due_date": "2020-01-05"}))
            .await,
    );
    let standup = numbered(
        &app.task(json!({"title": "standup", "due_at": "2031-03-04T14:00:00Z"}))
            .await,
    );
    let gym = numbered(
        &app.task(json!({"title": "gym", "priority": "urgent"}))
            .await,
    );
    let task = |(_, id): &(i64, String)| {
        let (app, id) = (&app, id.clone());
        async move {
            let res = app.get(&format!("/api/tasks/{id}")).await;
            assert_eq!(res.status, 200, "{}", res.body);
            res.body
        }
    };
    let (n_before, _) = app.counts().await;

    // A question is a list with the filter it implies.
    let r = say(&app, None, "got anything overdue?").await;
    assert_eq!(tools(&r), ["list_tasks"]);
    assert_eq!(r["tool_calls"][0]["args"]["overdue"], true, "{r}");
    let text = r["response"].as_str().unwrap();
    assert!(
        text.starts_with("1 task:") && text.contains("electricity bill"),
        "{text}"
    );
    let r = say(&app, None, "what's overdue at work?").await;
    assert_eq!(r["tool_calls"][0]["args"]["tags"], json!(["work"]), "{r}");
    // Several levels at once.
    let r = say(&app, None, "show urgent and high").await;
    assert_eq!(r["tool_calls"][0]["args"]["priority"], "urgent,high", "{r}");
    let text = r["response"].as_str().unwrap();
    assert!(
        text.starts_with("2 tasks:") && text.contains("gym") && text.contains("report"),
        "{text}"
    );
    // "the next 2 things due": two, soonest first.
    let r = say(&app, None, "the next 2 things due").await;
    assert_eq!(r["tool_calls"][0]["args"]["limit"], 2, "{r}");
    let items = r["tool_calls"][0]["result"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{r}");
    assert_eq!(items[0]["number"], bill.0, "the overdue one is due first");

    // Statements of fact complete the task they name.
    let r = say(&app, None, "I already paid the electricity bill").await;
    assert_eq!(tools(&r), ["list_tasks", "complete_task"], "{r}");
    assert!(
        r["response"].as_str().unwrap().starts_with("Completed"),
        "{r}"
    );
    assert_eq!(task(&bill).await["status"], "completed");
    let r = say(&app, None, "the report is finished").await;
    assert!(
        r["response"].as_str().unwrap().starts_with("Completed"),
        "{r}"
    );
    assert_eq!(task(&report).await["status"], "completed");
    let r = say(&app, None, &format!("untick #{}", report.0)).await;
    assert!(
        r["response"].as_str().unwrap().starts_with("Reopened"),
        "{r}"
    );
    assert_eq!(task(&report).await["status"], "pending");

    // A reminder about a task named by words goes on that task; no task is added.
    let r = say(&app, None, "remind me 15 minutes before the standup").await;
    assert_eq!(tools(&r).last(), Some(&"update_task"), "{r}");
    assert_eq!(task(&standup).await["reminders"][0]["before_minutes"], 15);
    // A move said as a fact.
    let r = say(&app, None, "the gym moved to tomorrow").await;
    assert_eq!(tools(&r).last(), Some(&"update_task"), "{r}");
    assert!(
        task(&gym).await["due_date"].is_string(),
        "{}",
        task(&gym).await
    );
    // The standup is in 2031: the reply names the year.
    let r = say(&app, None, &format!("show #{}", standup.0)).await;
    assert!(r["response"].as_str().unwrap().contains("2031"), "{r}");
    let (n_after, _) = app.counts().await;
    assert_eq!(n_after, n_before, "no task was added by any of these");

    // Quick-add marks never stay in the title.
    let r = say(&app, None, "file taxes @tomorrow !high *money").await;
    let added = &r["tool_calls"][0]["result"];
    assert_eq!(added["title"], "file taxes", "{r}");
    assert_eq!(added["priority"], "high");
    assert_eq!(added["tags"], json!(["money"]));
    assert!(added["due_date"].is_string(), "{r}");

    // "mark it done" right after a list of several asks which one; the answer completes it.
    let first = say(&app, None, "show urgent and high").await;
    let cid = first["conversation_id"].as_str().unwrap().to_owned();
    let r = say(&app, Some(&cid), "mark it done").await;
    let text = r["response"].as_str().unwrap();
    assert!(text.starts_with("Which one of these?"), "{text}");
    assert!(tools(&r).iter().all(|t| *t != "complete_task"), "{r}");
    let r = say(&app, Some(&cid), "1").await;
    assert_eq!(tools(&r), ["complete_task"], "{r}");
}

/// `POST /api/parse` reads text as the assistant does, in the user's timezone, and writes
/// nothing; too long a text is a 422 naming the field.
#[tokio::test]
async fn parse_reads_text_as_the_assistant_does_and_writes_nothing() {
    let Some(app) = App::new().await else { return };
    let (tasks, events) = app.counts().await;
    let res = app
        .post(
            "/api/parse",
            json!({"text": "file taxes @tomorrow 5pm !high #money"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["intent"], "add_task");
    let task = &res.body["task"];
    assert_eq!(task["title"], "file taxes");
    assert_eq!(task["priority"], "high");
    assert_eq!(task["tags"], json!(["money"]));
    // 5pm in New York, the user's zone: 21:00 or 22:00 UTC, with the zone's offset.
    let due = task["due_at"].as_str().unwrap();
    assert!(
        due.ends_with("T17:00:00-05:00") || due.ends_with("T17:00:00-04:00"),
        "{due}"
    );
    let res = app
        .post("/api/parse", json!({"text": "is there anything overdue?"}))
        .await;
    assert_eq!(
        res.body,
        json!({"intent": "list_tasks", "filter": {"overdue": true}})
    );
    assert_eq!(app.counts().await, (tasks, events), "nothing was written");

    let long = "a".repeat(2001);
    let res = app.post("/api/parse", json!({"text": long})).await;
    assert_eq!(res.error_fields(), ["text"]);
    let res = app.post("/api/parse", json!({"words": "add milk"})).await;
    res.problem(422);
    let res = app
        .call_as(
            "not-a-token",
            Method::POST,
            "/api/parse",
            Some(json!({"text": "x"})),
            &[],
        )
        .await;
    res.problem(401);
}

/// "undo that" takes back the assistant's last change in the conversation: an add, a change,
/// a completion, a deletion (which says what it deleted and offers the undo).
#[tokio::test]
async fn undo_takes_back_the_last_change_of_the_conversation() {
    let Some(app) = App::with_args(&["--rate-limit-chat-per-user", "0"]).await else {
        return;
    };
    let first = say(
        &app,
        None,
        "add call the bank tomorrow at 10am high priority",
    )
    .await;
    let cid = first["conversation_id"].as_str().unwrap().to_owned();
    let id = first["tool_calls"][0]["result"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let number = first["tool_calls"][0]["result"]["number"].as_i64().unwrap();
    let due = first["tool_calls"][0]["result"]["due_at"].clone();
    let get = |id: String| {
        let app = &app;
        async move { app.get(&format!("/api/tasks/{id}")).await }
    };

    // A change, then undo: the due time and priority are what they were.
    let r = say(
        &app,
        Some(&cid),
        "move it to friday at 3pm and make it low priority",
    )
    .await;
    assert_eq!(tools(&r), ["update_task"], "{r}");
    let r = say(&app, Some(&cid), "undo that").await;
    assert_eq!(tools(&r), ["update_task"], "{r}");
    assert!(
        r["response"]
            .as_str()
            .unwrap()
            .starts_with("Undone: put back"),
        "{r}"
    );
    let t = get(id.clone()).await.body;
    assert_eq!(
        (&t["due_at"], &t["priority"]),
        (&due, &json!("high")),
        "{t}"
    );

    // A completion, then undo: open again.
    say(&app, Some(&cid), "mark it done").await;
    assert_eq!(get(id.clone()).await.body["status"], "completed");
    say(&app, Some(&cid), "undo").await;
    assert_eq!(get(id.clone()).await.body["status"], "pending");

    // A deletion says what it deleted and offers the undo; undo adds it back, as it was.
    let r = say(&app, Some(&cid), &format!("delete #{number}")).await;
    let text = r["response"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("Deleted #{number} “call the bank”")) && text.contains("“undo”"),
        "{text}"
    );
    assert_eq!(get(id.clone()).await.status, 404);
    let r = say(&app, Some(&cid), "oops, undo that").await;
    assert_eq!(tools(&r), ["add_task"], "{r}");
    let back = &r["tool_calls"][0]["result"];
    assert_eq!(
        (&back["title"], &back["priority"], &back["due_at"]),
        (&json!("call the bank"), &json!("high"), &due),
        "{back}"
    );
    // Nothing more to take back.
    let r = say(&app, Some(&cid), "undo").await;
    assert!(tools(&r).is_empty(), "{r}");
    assert!(
        r["response"]
            .as_str()
            .unwrap()
            .starts_with("There is nothing to undo"),
        "{r}"
    );

    // An add, then undo: gone.
    let r = say(&app, Some(&cid), "add water the plants").await;
    let added = r["tool_calls"][0]["result"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    say(&app, Some(&cid), "undo").await;
    assert_eq!(get(added).await.status, 404);
}

/// "add eggs, bread and butter to groceries" is three tasks tagged groceries, and the reply
/// says so; "buy milk and eggs" stays one task; undo takes the three back.
#[tokio::test]
async fn a_list_of_things_to_a_list_is_one_task_each() {
    let Some(app) = App::with_args(&["--rate-limit-chat-per-user", "0"]).await else {
        return;
    };
    let r = say(&app, None, "add eggs, bread and butter to groceries").await;
    let cid = r["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(tools(&r), ["add_task", "add_task", "add_task"], "{r}");
    let text = r["response"].as_str().unwrap();
    assert!(text.starts_with("Added 3 tasks:"), "{text}");
    let titles: Vec<&str> = r["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["result"]["tags"], json!(["groceries"]), "{c}");
            c["result"]["title"].as_str().unwrap()
        })
        .collect();
    assert_eq!(titles, ["eggs", "bread", "butter"]);
    let r = say(&app, Some(&cid), "undo").await;
    assert_eq!(
        tools(&r),
        ["delete_task", "delete_task", "delete_task"],
        "{r}"
    );
    let page = app.get("/api/tasks?status=all").await;
    assert_eq!(page.body["items"], json!([]), "{}", page.body);

    let r = say(&app, None, "add buy milk and eggs tomorrow").await;
    assert_eq!(tools(&r), ["add_task"], "{r}");
    assert_eq!(r["tool_calls"][0]["result"]["title"], "buy milk and eggs");
}

/// "what did I finish today?" lists what was completed today, by completion day, not due day.
#[tokio::test]
async fn what_was_finished_is_listed_by_the_day_it_was_finished() {
    let Some(app) = App::with_args(&["--rate-limit-chat-per-user", "0"]).await else {
        return;
    };
    let done = app
        .task(json!({"title": "file the report", "due_date": "2020-03-01"}))
        .await;
    app.task(json!({"title": "still open"})).await;
    let res = app
        .post(
            &format!("/api/tasks/{}/complete", done["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let r = say(&app, None, "what did I finish today?").await;
    let args = &r["tool_calls"][0]["args"];
    assert!(
        args["completed_from"].is_string() && args["completed_to"].is_string(),
        "{r}"
    );
    let text = r["response"].as_str().unwrap();
    assert!(
        text.starts_with("1 task:") && text.contains("file the report"),
        "{text}"
    );
    let r = say(&app, None, "what did I finish yesterday?").await;
    assert_eq!(r["tool_calls"][0]["result"]["items"], json!([]), "{r}");
}

/// "add buy milk and eggs tomorrow and remind me at 8am": one task, due then, with its reminder.
#[tokio::test]
async fn a_task_and_its_reminder_in_one_sentence_are_one_task() {
    let Some(app) = App::with_args(&["--rate-limit-chat-per-user", "0"]).await else {
        return;
    };
    let r = say(
        &app,
        None,
        "add buy milk and eggs tomorrow and remind me at 8am",
    )
    .await;
    assert_eq!(tools(&r), ["add_task"], "{r}");
    let task = &r["tool_calls"][0]["result"];
    assert_eq!(task["title"], "buy milk and eggs", "{task}");
    let due = task["due_at"].as_str().unwrap();
    let local = chrono::DateTime::parse_from_rfc3339(due)
        .unwrap()
        .with_timezone(&chrono_tz::America::New_York);
    let tomorrow = chrono::Utc::now()
        .with_timezone(&chrono_tz::America::New_York)
        .date_naive()
        .succ_opt()
        .unwrap();
    assert_eq!(local.date_naive(), tomorrow, "{due}");
    assert_eq!(local.format("%H:%M").to_string(), "08:00", "{due}");
    assert_eq!(task["reminders"].as_array().unwrap().len(), 1, "{task}");
    let text = r["response"].as_str().unwrap();
    assert!(
        text.starts_with("Added #1 “buy milk and eggs”")
            && text.contains("reminder at the due time"),
        "{text}"
    );

    let r = say(
        &app,
        None,
        "add call the plumber friday at 5pm and remind me 30 minutes before",
    )
    .await;
    assert_eq!(tools(&r), ["add_task"], "{r}");
    let task = &r["tool_calls"][0]["result"];
    assert_eq!(task["title"], "call the plumber", "{task}");
    assert_eq!(task["reminders"][0]["before_minutes"], 30, "{task}");
}

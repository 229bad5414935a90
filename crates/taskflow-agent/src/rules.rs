//! The rule-based agent (the default): what `taskflow-nlu` understood becomes tool calls
//! and a friendly, specific reply. Its memory is the conversation's [`State`]: the task last
//! singled out ("it", "that") and a question awaiting an answer ("which one?").

use chrono::{NaiveTime, TimeZone as _};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use taskflow_app::TaskRef;
use taskflow_core::{Due, Task, TaskStatus, User};
use taskflow_nlu::{Changes, Filter, Intent, NewTask, Parsed, SmallTalk, Target};

use crate::{
    reply::describe,
    tools::{ToolCall, ToolError, Tools},
};

/// What the agent remembers between messages of one conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The number of the task last created, changed, completed or named alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_task: Option<i64>,
    /// A question the user was asked: which of these tasks?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// The tasks of the last list that showed several (the first ten): "mark it done" right
    /// after it asks which one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listed: Vec<i64>,
    /// How to take back the last change made in this conversation ("undo that").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Undo>,
}

impl State {
    /// Remembers a change made outside the rules (by the model): `undo` takes it back, and
    /// "it" is the task it touched.
    pub(crate) fn remember(&mut self, undo: Undo) {
        self.last_task = match &undo {
            Undo::Delete { number }
            | Undo::Reopen { number, .. }
            | Undo::Complete { number }
            | Undo::Restore { number, .. } => Some(*number),
            Undo::DeleteAll { .. } | Undo::Recreate { .. } => None,
        };
        self.listed.clear();
        self.pending = None;
        self.undo = Some(undo);
    }
}

/// The last change of a conversation, as the tool call that takes it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum Undo {
    /// A task was added: delete it.
    Delete { number: i64 },
    /// Several tasks were added at once: delete them.
    DeleteAll { numbers: Vec<i64> },
    /// A task was completed: reopen it. A recurring one's next occurrence stays.
    Reopen {
        number: i64,
        #[serde(default)]
        recurring: bool,
    },
    /// A task was reopened: complete it again.
    Complete { number: i64 },
    /// A task was changed: these `update_task` arguments put back what it was.
    Restore { number: i64, args: Value },
    /// A task was deleted: these `add_task` arguments add it again (under a new number).
    Recreate { args: Value },
}

impl Undo {
    /// What takes back `tool` called with `args`, which answered `result`; `before` is the
    /// task's JSON before an `update_task` or `set_reminder`. `None` for a call that changed
    /// nothing (a list, a failure).
    pub(crate) fn of(
        tool: &str,
        args: &Value,
        result: &Value,
        before: Option<&Value>,
    ) -> Option<Self> {
        if result.get("error").is_some() {
            return None;
        }
        let number = result["number"].as_i64();
        match tool {
            "add_task" => number.map(|number| Self::Delete { number }),
            "complete_task" => number.map(|number| Self::Reopen {
                number,
                recurring: result["recurrence"].is_string(),
            }),
            "reopen_task" => number.map(|number| Self::Complete { number }),
            "delete_task" => Some(Self::Recreate {
                args: recreate_args(&result["task"]),
            }),
            // A reminder added is the task's reminders changed.
            "set_reminder" => Some(Self::Restore {
                number: number?,
                args: restore_args(before?, &json!({"reminders_before_minutes": []})),
            }),
            "update_task" => Some(Self::Restore {
                number: number?,
                args: restore_args(before?, args),
            }),
            _ => None,
        }
    }

    /// What takes back a turn's changes, in the order made: tasks added together are deleted
    /// together; otherwise the last change is taken back.
    pub(crate) fn of_turn(mut undos: Vec<Self>) -> Option<Self> {
        let numbers: Vec<i64> = undos
            .iter()
            .map_while(|u| match u {
                Self::Delete { number } => Some(*number),
                _ => None,
            })
            .collect();
        if numbers.len() > 1 && numbers.len() == undos.len() {
            return Some(Self::DeleteAll { numbers });
        }
        undos.pop()
    }
}

/// "undo", "undo that", "take that back", "oops, undo it".
pub(crate) fn is_undo(message: &str) -> bool {
    let m = message
        .trim()
        .trim_end_matches(['.', '!'])
        .to_ascii_lowercase();
    let m = m
        .trim_start_matches("oops")
        .trim_start_matches("oh no")
        .trim_start_matches([',', ' '])
        .trim_end_matches(" please")
        .trim_start_matches("please ");
    matches!(
        m,
        "undo"
            | "undo that"
            | "undo it"
            | "undo this"
            | "undo the last change"
            | "undo the last one"
            | "undo the last thing"
            | "undo last"
            | "take that back"
            | "take it back"
            | "revert that"
            | "revert it"
            | "revert"
    )
}

/// `add_task` arguments that add `task` (its JSON) again: what it said, its relative
/// reminders.
fn recreate_args(task: &Value) -> Value {
    let mut args = json!({"title": task["title"]});
    for key in [
        "description",
        "priority",
        "due_at",
        "due_date",
        "recurrence",
        "recurrence_anchor",
    ] {
        if let Some(v) = task.get(key).filter(|v| !v.is_null() && *v != "") {
            args[key] = v.clone();
        }
    }
    if task["tags"].as_array().is_some_and(|t| !t.is_empty()) {
        args["tags"] = task["tags"].clone();
    }
    let before: Vec<Value> = task["reminders"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r.get("before_minutes").filter(|m| m.is_i64()).cloned())
                .collect()
        })
        .unwrap_or_default();
    if !before.is_empty() {
        args["reminders_before_minutes"] = Value::Array(before);
    }
    args
}

/// `update_task` arguments that put back, from `before` (the task's JSON before the change),
/// each field that `change` (the arguments of the change) touched.
fn restore_args(before: &Value, change: &Value) -> Value {
    let mut args = json!({});
    let touched = |k: &str| change.get(k).is_some();
    for key in [
        "title",
        "description",
        "priority",
        "recurrence",
        "recurrence_anchor",
    ] {
        if touched(key) {
            args[key] = before.get(key).cloned().unwrap_or(Value::Null);
        }
    }
    if ["tags", "add_tags", "remove_tags"]
        .iter()
        .any(|k| touched(k))
    {
        args["tags"] = before.get("tags").cloned().unwrap_or_else(|| json!([]));
    }
    if touched("due_at") || touched("due_date") {
        match (
            before.get("due_at").filter(|v| v.is_string()),
            before.get("due_date").filter(|v| v.is_string()),
        ) {
            (Some(at), _) => args["due_at"] = at.clone(),
            (None, Some(day)) => args["due_date"] = day.clone(),
            (None, None) => args["due_at"] = Value::Null,
        }
    }
    if touched("reminders_before_minutes") || touched("due_at") || touched("due_date") {
        args["reminders_before_minutes"] = recreate_args(before)
            .get("reminders_before_minutes")
            .cloned()
            .unwrap_or_else(|| json!([]));
    }
    args
}

/// Deletes the tasks a list added ("add eggs, bread and butter to groceries").
async fn delete_added(agent: &mut Agent<'_>, numbers: &[i64]) -> String {
    let mut deleted = Vec::new();
    for n in numbers {
        if agent
            .call("delete_task", json!({"task_id": n}))
            .await
            .is_ok()
        {
            deleted.push(format!("#{n}"));
        }
    }
    agent.state.last_task = None;
    format!(
        "Undone: deleted the {} tasks just added ({}).",
        deleted.len(),
        deleted.join(", ")
    )
}

/// Takes back the conversation's last change.
async fn undo(agent: &mut Agent<'_>) -> String {
    let Some(undo) = agent.state.undo.take() else {
        return "There is nothing to undo: I have made no change in this conversation yet \
                (or already took the last one back)."
            .to_owned();
    };
    let (tool, args, verb) = match &undo {
        Undo::DeleteAll { numbers } => return delete_added(agent, numbers).await,
        Undo::Delete { number } => ("delete_task", json!({"task_id": number}), "Undone: deleted"),
        Undo::Reopen { number, .. } => (
            "reopen_task",
            json!({"task_id": number}),
            "Undone: reopened",
        ),
        Undo::Complete { number } => (
            "complete_task",
            json!({"task_id": number}),
            "Undone: completed",
        ),
        Undo::Restore { number, args } => {
            let mut a = args.clone();
            a["task_id"] = json!(number);
            ("update_task", a, "Undone: put back")
        }
        Undo::Recreate { args } => ("add_task", args.clone(), "Undone: restored"),
    };
    match agent.call(tool, args).await {
        Ok(result) => {
            let task = if tool == "delete_task" {
                &result["task"]
            } else {
                &result
            };
            agent.state.last_task = if tool == "delete_task" {
                None
            } else {
                task["number"].as_i64()
            };
            let mut text = format!("{verb} {}.", describe(task, agent.tz));
            if tool == "add_task" {
                text.push_str(" (A deleted task comes back under a new number.)");
            }
            if matches!(
                undo,
                Undo::Reopen {
                    recurring: true,
                    ..
                }
            ) {
                text.push_str(" Its next occurrence, made when it was completed, stays.");
            }
            text
        }
        Err(e) => format!("I could not undo that: {e}."),
    }
}

/// An action waiting for the user to pick one of several tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub intent: String,
    pub candidates: Vec<i64>,
    #[serde(default)]
    pub changes: Value,
}

impl Pending {
    /// "Which one?": `intent` waits for one of `candidates`, with its `changes`.
    fn which(intent: Intent, candidates: Vec<i64>, changes: &Value) -> Self {
        Self {
            intent: serde_json::to_value(intent)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            candidates,
            changes: changes.clone(),
        }
    }
}

/// The pending action of "delete all …": confirm first.
const BULK_DELETE: &str = "delete_many";

/// "all completed tasks", "everything tagged x": more than one task by intent.
fn is_bulk(q: &str) -> bool {
    let q = q.to_ascii_lowercase();
    // "completed tasks", "the done ones": a status and a plural, not a title.
    let by_status = matches!(
        q.split_whitespace().collect::<Vec<_>>().as_slice(),
        [
            "completed" | "done" | "finished",
            "tasks" | "todos" | "ones" | "items"
        ]
    );
    by_status
        || q == "all"
        || q == "everything"
        || q.starts_with("all ")
        || q.starts_with("every ")
        || q.starts_with("everything ")
}

/// Lists what "delete all …" would delete and asks for a yes.
async fn bulk_delete(agent: &mut Agent<'_>, q: &str) -> String {
    let lower = q.to_ascii_lowercase();
    let status = if ["completed", "done", "finished"]
        .iter()
        .any(|w| lower.split_whitespace().any(|x| x == *w))
    {
        "completed"
    } else {
        "all"
    };
    let words: Vec<&str> = lower
        .split_whitespace()
        .filter(|w| {
            !matches!(
                *w,
                "all"
                    | "every"
                    | "everything"
                    | "the"
                    | "my"
                    | "of"
                    | "tasks"
                    | "task"
                    | "todos"
                    | "completed"
                    | "done"
                    | "finished"
                    | "about"
                    | "with"
            )
        })
        .collect();
    let mut args = json!({"status": status, "limit": 100});
    if !words.is_empty() {
        args["query"] = json!(words.join(" "));
    }
    let found = match agent.call("list_tasks", args).await {
        Ok(v) => v["items"].as_array().cloned().unwrap_or_default(),
        Err(e) => return format!("I could not look that up: {e}."),
    };
    if found.is_empty() {
        return "No tasks match that, so there is nothing to delete.".to_owned();
    }
    let lines: Vec<String> = found
        .iter()
        .take(20)
        .map(|t| format!("• {}", describe(t, agent.tz)))
        .collect();
    let more = if found.len() > 20 {
        format!("\n… and {} more", found.len() - 20)
    } else {
        String::new()
    };
    agent.state.pending = Some(Pending {
        intent: BULK_DELETE.to_owned(),
        candidates: found.iter().filter_map(|t| t["number"].as_i64()).collect(),
        changes: Value::Null,
    });
    format!(
        "This would delete {} tasks:\n{}{more}\nReply “yes” to delete them, or “no” to keep them.",
        found.len(),
        lines.join("\n")
    )
}

pub const HELP: &str = "I keep your tasks. Try:\n\
• “add pay rent every month on the 1st at 9am, urgent”\n\
• “remind me to call mom tomorrow at 6pm”\n\
• “what's due this week?”, “show overdue tasks”, “show tasks tagged work”\n\
• “complete #3”, “mark it as done”, “reopen task 4”\n\
• “move the report to friday”, “rename #2 to call grandma”, “make task 6 repeat every week”\n\
• “remind me about #2 an hour before”, “tag it work”\n\
• “delete the dentist task”, “clear completed tasks”\n\
Tasks have numbers (#1, #2 …); “it” means the task we just talked about.";

fn not_understood(message: &str) -> String {
    let shown: String = message.chars().take(60).collect();
    format!(
        "I did not understand “{shown}”. Try “add buy milk tomorrow at 5pm”, “show my tasks” or “complete #3”, or say “help” to see what I can do."
    )
}

/// The agent's answer to one message.
#[derive(Debug, Clone)]
pub struct Turn {
    pub text: String,
    pub calls: Vec<ToolCall>,
    pub state: State,
}

struct Agent<'a> {
    tools: &'a Tools,
    user: &'a User,
    tz: Tz,
    state: State,
    calls: Vec<ToolCall>,
}

impl Agent<'_> {
    async fn call(&mut self, tool: &str, args: Value) -> Result<Value, ToolError> {
        let result = self.tools.call(self.user, tool, &args).await;
        let shown = match &result {
            Ok(v) => v.clone(),
            Err(e) => json!({"error": e.to_string()}),
        };
        self.calls.push(ToolCall {
            tool: tool.to_owned(),
            args,
            result: shown,
        });
        result
    }

    /// The task as stored, read without a tool call (to word a reply, not to act).
    async fn stored(&self, number: i64) -> Option<Task> {
        self.tools
            .app()
            .task(self.user, TaskRef::Number(number))
            .await
            .ok()
    }

    fn done(self, text: String) -> Turn {
        Turn {
            text,
            calls: self.calls,
            state: self.state,
        }
    }
}

/// The numbered choice in an answer: "2", "#2", "the second one", "number 2".
fn choice(message: &str, count: usize) -> Option<usize> {
    let m = message
        .trim()
        .trim_end_matches(['.', '!'])
        .to_ascii_lowercase();
    let m = m
        .trim_start_matches("the ")
        .trim_end_matches(" one")
        .trim_start_matches("number ")
        .trim_start_matches('#');
    let n = match m {
        "first" | "1st" => 1,
        "second" | "2nd" => 2,
        "third" | "3rd" => 3,
        "fourth" | "4th" => 4,
        "fifth" | "5th" => 5,
        "last" => count,
        other => other.parse().ok()?,
    };
    (1..=count).contains(&n).then_some(n)
}

/// Answers one message.
pub async fn respond(
    tools: &Tools,
    user: &User,
    state: State,
    message: &str,
    now: chrono::NaiveDateTime,
) -> Turn {
    let tz = user.timezone.tz();
    let mut agent = Agent {
        tools,
        user,
        tz,
        state,
        calls: Vec::new(),
    };
    if is_undo(message) {
        agent.state.pending = None;
        let text = undo(&mut agent).await;
        return agent.done(text);
    }
    // An answer to "delete all of these?".
    if let Some(p) = agent.state.pending.take_if(|p| p.intent == BULK_DELETE) {
        let answer = message
            .trim()
            .trim_end_matches(['.', '!'])
            .to_ascii_lowercase();
        if matches!(
            answer.as_str(),
            "yes"
                | "y"
                | "yes please"
                | "confirm"
                | "ok"
                | "okay"
                | "sure"
                | "do it"
                | "delete them"
        ) {
            let mut deleted = 0;
            for n in &p.candidates {
                if agent
                    .call("delete_task", json!({"task_id": n}))
                    .await
                    .is_ok()
                {
                    deleted += 1;
                }
            }
            agent.state.last_task = None;
            // Many tasks at once are not taken back one by one.
            agent.state.undo = None;
            let noun = if deleted == 1 { "task" } else { "tasks" };
            return agent.done(format!("Deleted {deleted} {noun}."));
        }
        if matches!(
            answer.as_str(),
            "no" | "n" | "cancel" | "keep them" | "stop" | "nope" | "don't"
        ) {
            return agent.done("Kept them; nothing was deleted.".to_owned());
        }
        // Anything else is a new request; the question lapses.
    }
    // An answer to "which one?".
    if let Some(p) = agent.state.pending.take()
        && let Some(i) = choice(message, p.candidates.len())
    {
        let number = p.candidates[i - 1];
        let intent = match p.intent.as_str() {
            "complete_task" => Intent::CompleteTask,
            "reopen_task" => Intent::ReopenTask,
            "delete_task" => Intent::DeleteTask,
            _ => Intent::UpdateTask,
        };
        let changes: Option<Changes> = None;
        let text = act(&mut agent, intent, number, changes.as_ref(), &p.changes).await;
        return agent.done(text);
    }
    let parsed: Parsed = taskflow_nlu::parse(message, now, tz);
    // "delete all …", "mark all done": a query that means more than one task.
    let bulk = match &parsed.target {
        Some(Target::Query(q)) if is_bulk(q) => Some(q.clone()),
        _ => None,
    };
    let text = match (parsed.intent, bulk) {
        (Intent::Help, _) => HELP.to_owned(),
        (Intent::Unknown, _) => match taskflow_nlu::small_talk(message) {
            Some(SmallTalk::Thanks) => "You're welcome!".to_owned(),
            Some(SmallTalk::Greeting) => {
                "Hello! What can I do for you? Try “add buy milk tomorrow at 5pm”, \
                 “show my tasks”, or say “help”."
                    .to_owned()
            }
            None => not_understood(message),
        },
        (Intent::AddTask, _) => match parsed.task {
            Some(t) if !parsed.also.is_empty() => add_all(&mut agent, t, parsed.also).await,
            Some(t) => add(&mut agent, &t).await,
            None => not_understood(message),
        },
        (Intent::ListTasks, _) => list(&mut agent, parsed.filter.unwrap_or_default()).await,
        (Intent::DeleteTask, Some(q)) => bulk_delete(&mut agent, &q).await,
        // "mark all done", "postpone everything to monday": only deletes go by the batch.
        (Intent::CompleteTask | Intent::ReopenTask | Intent::UpdateTask, Some(_)) => {
            "I change one task at a time: say its number or some words of its title, like \
             “complete #3” or “move the report to monday”. “show my tasks” lists the numbers."
                .to_owned()
        }
        (intent, _) => {
            let target = parsed.target.unwrap_or(Target::Last(true));
            let changes_json = parsed
                .changes
                .as_ref()
                .map(changes_args)
                .unwrap_or(Value::Null);
            match resolve(&mut agent, intent, &target, &changes_json).await {
                Ok(number) => {
                    act(
                        &mut agent,
                        intent,
                        number,
                        parsed.changes.as_ref(),
                        &changes_json,
                    )
                    .await
                }
                Err(text) => text,
            }
        }
    };
    agent.done(text)
}

/// `time` on the local day of `due`, as RFC 3339 with the offset of that day; `None` when
/// there is no day, or the time does not exist on it (skipped by a clock change).
fn same_day_at(due: Option<&Due>, time: NaiveTime, tz: Tz) -> Option<String> {
    let day = match due? {
        Due::Date(d) => *d,
        Due::At(t) => t.with_timezone(&tz).date_naive(),
    };
    let at = tz.from_local_datetime(&day.and_time(time)).earliest()?;
    Some(at.to_rfc3339())
}

fn task_args(t: &NewTask) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
    }
    v
}

fn changes_args(c: &Changes) -> Value {
    serde_json::to_value(c).unwrap_or_default()
}

async fn add(agent: &mut Agent<'_>, t: &NewTask) -> String {
    // "remind me to call mom": a reminder is relative to a due time, and none was said. The
    // task is added all the same, and the reply asks for the time.
    let undated = t.due_at.is_none() && t.due_date.is_none();
    let dropped_reminders = undated && !t.reminders_before_minutes.is_empty();
    let mut args = task_args(t);
    if dropped_reminders && let Some(o) = args.as_object_mut() {
        o.remove("reminders_before_minutes");
    }
    match agent.call("add_task", args).await {
        Ok(task) => {
            agent.state.last_task = task["number"].as_i64();
            agent.state.undo = agent.state.last_task.map(|number| Undo::Delete { number });
            let added = format!("Added {}.", describe(&task, agent.tz));
            if dropped_reminders {
                format!(
                    "{added} It has no due time, so there is no reminder yet: say when, \
                     for example “remind me about it tomorrow at 9am”."
                )
            } else {
                added
            }
        }
        Err(e) => format!("I could not add that task: {e}."),
    }
}

/// "add eggs, bread and butter to groceries": each its own task; the reply says how many.
async fn add_all(agent: &mut Agent<'_>, first: NewTask, also: Vec<NewTask>) -> String {
    let mut lines = Vec::new();
    let mut numbers = Vec::new();
    for t in std::iter::once(first).chain(also) {
        match agent.call("add_task", task_args(&t)).await {
            Ok(task) => {
                numbers.extend(task["number"].as_i64());
                lines.push(format!("• {}", describe(&task, agent.tz)));
            }
            Err(e) => lines.push(format!("• “{}” was not added: {e}", t.title)),
        }
    }
    agent.state.last_task = None;
    agent.state.listed = numbers.clone();
    let count = numbers.len();
    agent.state.undo = (count > 0).then_some(Undo::DeleteAll { numbers });
    let noun = if count == 1 { "task" } else { "tasks" };
    format!("Added {count} {noun}:\n{}", lines.join("\n"))
}

async fn list(agent: &mut Agent<'_>, f: Filter) -> String {
    let mut args = json!({"status": f.status.unwrap_or("pending")});
    if let Some(p) = f.priority {
        args["priority"] = json!(p);
    }
    if !f.tags.is_empty() {
        args["tags"] = json!(f.tags);
    }
    if let Some(q) = &f.query {
        args["query"] = json!(q);
    }
    if let Some(d) = &f.due {
        args["due_from"] = json!(d.from);
        args["due_to"] = json!(d.to);
    }
    if f.overdue == Some(true) {
        args["overdue"] = json!(true);
    }
    if let Some(d) = &f.completed {
        args["completed_from"] = json!(d.from);
        args["completed_to"] = json!(d.to);
    }
    if let Some(n) = f.limit {
        args["limit"] = json!(n);
    }
    match agent.call("list_tasks", args).await {
        Ok(page) => {
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                return "Nothing matches that — you have no such tasks.".to_owned();
            }
            if items.len() == 1 {
                agent.state.last_task = items[0]["number"].as_i64();
                agent.state.listed.clear();
            } else {
                // "it" no longer means one task: the next "mark it done" asks which.
                agent.state.last_task = None;
                agent.state.listed = items
                    .iter()
                    .filter_map(|t| t["number"].as_i64())
                    .take(10)
                    .collect();
            }
            let lines: Vec<String> = items
                .iter()
                .map(|t| format!("• {}", describe(t, agent.tz)))
                .collect();
            let noun = if items.len() == 1 { "task" } else { "tasks" };
            format!("{} {noun}:\n{}", items.len(), lines.join("\n"))
        }
        Err(e) => format!("I could not list your tasks: {e}."),
    }
}

/// The number of the task a command means, or the reply that asks or explains.
async fn resolve(
    agent: &mut Agent<'_>,
    intent: Intent,
    target: &Target,
    changes: &Value,
) -> Result<i64, String> {
    match target {
        Target::Number(n) => Ok(*n),
        Target::Last(_) => match agent.state.last_task {
            Some(n) => Ok(n),
            None if agent.state.listed.len() > 1 => {
                Err(which_of_listed(agent, intent, changes).await)
            }
            None => Err(
                "Which task do you mean? Say its number, like “#3”, or some words of its title."
                    .to_owned(),
            ),
        },
        Target::Query(q) => {
            // Completing looks among open tasks, reopening among completed ones.
            let status = match intent {
                Intent::CompleteTask => "pending",
                Intent::ReopenTask => "completed",
                _ => "all",
            };
            let found = agent
                .call(
                    "list_tasks",
                    json!({"status": status, "query": q, "limit": 10}),
                )
                .await
                .map_err(|e| format!("I could not look that up: {e}."))?;
            let items = found["items"].as_array().cloned().unwrap_or_default();
            match items.len() {
                0 => Err(format!(
                    "I couldn't find a task matching “{q}”. Say “show my tasks” to see them with their numbers."
                )),
                1 => Ok(items[0]["number"].as_i64().unwrap_or_default()),
                n => {
                    let candidates: Vec<i64> =
                        items.iter().filter_map(|t| t["number"].as_i64()).collect();
                    let lines: Vec<String> = items
                        .iter()
                        .enumerate()
                        .map(|(i, t)| format!("{}. {}", i + 1, describe(t, agent.tz)))
                        .collect();
                    agent.state.pending = Some(Pending::which(intent, candidates, changes));
                    Err(format!(
                        "{n} tasks match “{q}”:\n{}\nWhich one? Answer with its number (1–{n}).",
                        lines.join("\n")
                    ))
                }
            }
        }
    }
}

/// "Which one?" among the tasks just listed, remembered as the pending question.
async fn which_of_listed(agent: &mut Agent<'_>, intent: Intent, changes: &Value) -> String {
    let candidates = agent.state.listed.clone();
    let mut lines = Vec::with_capacity(candidates.len());
    for (i, n) in candidates.iter().enumerate() {
        let title = agent
            .stored(*n)
            .await
            .map(|t| format!(" “{}”", t.title.as_str()))
            .unwrap_or_default();
        lines.push(format!("{}. #{n}{title}", i + 1));
    }
    let n = candidates.len();
    agent.state.pending = Some(Pending::which(intent, candidates, changes));
    format!(
        "Which one of these?\n{}\nAnswer with its place in the list (1–{n}).",
        lines.join("\n")
    )
}

async fn act(
    agent: &mut Agent<'_>,
    intent: Intent,
    number: i64,
    parsed: Option<&Changes>,
    changes: &Value,
) -> String {
    let (tool, verb) = match intent {
        Intent::CompleteTask => ("complete_task", "Completed"),
        Intent::ReopenTask => ("reopen_task", "Reopened"),
        Intent::DeleteTask => ("delete_task", "Deleted"),
        _ => ("update_task", "Updated"),
    };
    let mut args = if tool == "update_task" {
        changes.clone()
    } else {
        json!({})
    };
    if !args.is_object() {
        args = json!({});
    }
    args["task_id"] = json!(number);
    if tool == "update_task" {
        let keys = args.as_object().map(|o| o.len()).unwrap_or(0);
        if keys <= 1 {
            return format!(
                "What should I change about #{number}? For example “move #{number} to friday” or “make #{number} urgent”."
            );
        }
        // "change it to 3pm": a task that has a day keeps it and gets the new time.
        if let Some(time) = parsed.and_then(|c| c.time_only)
            && let Some(task) = agent.stored(number).await
            && let Some(due_at) = same_day_at(task.due.as_ref(), time, agent.tz)
        {
            args["due_at"] = json!(due_at);
        }
        // A reminder is relative to the due time: a task without one is asked about, not
        // sent to the tool for a validation error.
        let reminders = args["reminders_before_minutes"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        let dates_it = !args["due_at"].is_null() || !args["due_date"].is_null();
        if reminders
            && !dates_it
            && let Some(task) = agent.stored(number).await
            && task.due.is_none()
        {
            return format!(
                "#{number} “{}” has no due date or time, so there is nothing to remind you \
                 before yet: say when, for example “remind me about #{number} tomorrow at 9am”.",
                task.title.as_str()
            );
        }
    }
    // Completing a completed task or reopening an open one changes nothing: say so.
    let already = match intent {
        Intent::CompleteTask => Some((TaskStatus::Completed, "is already done")),
        Intent::ReopenTask => Some((
            TaskStatus::Pending,
            "is not completed, so it is already open",
        )),
        _ => None,
    };
    if let Some((status, said)) = already
        && let Some(task) = agent.stored(number).await
        && task.status == status
    {
        agent.state.last_task = Some(number);
        return format!("#{number} “{}” {said}.", task.title.as_str());
    }
    let before = match tool {
        "update_task" => agent.stored(number).await.map(|t| t.to_json()),
        _ => None,
    };
    let change = args.clone();
    match agent.call(tool, args).await {
        Ok(result) => {
            agent.state.undo = Undo::of(tool, &change, &result, before.as_ref());
            let task = if tool == "delete_task" {
                result["task"].clone()
            } else {
                result
            };
            agent.state.last_task = if tool == "delete_task" {
                None
            } else {
                Some(number)
            };
            let mut text = format!("{verb} {}.", describe(&task, agent.tz));
            if tool == "complete_task" && task["series_ended"] == true {
                text.push_str(" That was the last one: the series has ended.");
            } else if tool == "complete_task" && task["recurrence"].is_string() {
                text.push_str(" Its next occurrence is on the way.");
            }
            if tool == "delete_task" {
                text.push_str(" Say “undo” to bring it back.");
            }
            text
        }
        Err(ToolError::NoSuchTask(n)) => {
            format!("There is no task #{n}. Say “show my tasks” to see them with their numbers.")
        }
        Err(e) => format!("I could not do that: {e}."),
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use taskflow_nlu::Intent;

    use super::HELP;

    /// Every example the help gives is understood: none reads as "unknown".
    #[test]
    fn every_example_in_the_help_is_understood() {
        let now = NaiveDate::from_ymd_opt(2026, 11, 23)
            .and_then(|d| d.and_hms_opt(10, 0, 0))
            .expect("a valid moment");
        let examples: Vec<&str> = HELP
            .split('“')
            .skip(1)
            .filter_map(|s| s.split('”').next())
            .filter(|s| s.split_whitespace().count() > 1)
            .collect();
        assert!(examples.len() >= 15, "{examples:?}");
        for example in examples {
            let parsed = taskflow_nlu::parse(example, now, chrono_tz::UTC);
            assert_ne!(parsed.intent, Intent::Unknown, "{example:?}");
        }
    }
}

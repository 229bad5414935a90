//! The task tools. Each is a thin layer over a use case: arguments in (JSON, the parameter
//! names MCP clients of this kind of app already use; `task_id` is the per-user number),
//! the task(s) as JSON out. The user always comes from the session; a `user_id` argument
//! must name that same user.

use serde::Serialize;
use serde_json::{Value, json};
use taskflow_app::{
    App, AppError, DraftInput, ListInput, PatchInput, ReminderInput, TaskQuery, TaskRef,
    input::{self, MAX_PAGE},
};
use taskflow_core::{ReminderSpec, Tag, Task, TaskDraft, TaskPatch, User, ValidationErrors};

/// A tool's description for a model (MCP `tools/list`, function definitions).
#[derive(Debug, Clone, Serialize)]
pub struct ToolDef {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
}

/// The tools' definitions, made once.
static DEFINITIONS: std::sync::LazyLock<Vec<ToolDef>> =
    std::sync::LazyLock::new(Tools::definitions);

/// One call: what was asked and what came back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    pub tool: String,
    pub args: Value,
    pub result: Value,
}

/// Why a tool call did not happen; the message is written for the caller (a person or a model).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Invalid(String),
    #[error("there is no task #{0}")]
    NoSuchTask(i64),
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    #[error("something went wrong on our side; it has been logged")]
    Internal,
}

impl From<ValidationErrors> for ToolError {
    fn from(e: ValidationErrors) -> Self {
        ToolError::Invalid(e.to_string())
    }
}

impl From<AppError> for ToolError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Validation(v) => v.into(),
            AppError::NotFound => ToolError::Invalid("no such task".into()),
            AppError::Store(_) | AppError::Internal(_) => {
                tracing::error!(error = %e, "tool call failed");
                ToolError::Internal
            }
            other => ToolError::Invalid(other.to_string()),
        }
    }
}

/// The tools, over the use cases of `app`.
#[derive(Debug, Clone)]
pub struct Tools {
    app: App,
}

fn schema(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

fn task_fields() -> serde_json::Map<String, Value> {
    let v = json!({
        "title": {"type": "string", "description": "What to do, 1-500 characters."},
        "description": {"type": "string", "description": "Details, up to 10,000 characters."},
        "due_at": {"type": "string", "format": "date-time", "description": "Due moment, RFC 3339 with offset."},
        "due_date": {"type": "string", "format": "date", "description": "Due day (all-day task), YYYY-MM-DD. Not with due_at."},
        "priority": {"type": "string", "enum": ["low", "medium", "high", "urgent"]},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "Up to 20 tags of letters, digits, - and _."},
        "recurrence": {"type": ["string", "null"], "description": "RFC 5545 RRULE without DTSTART, e.g. FREQ=WEEKLY;BYDAY=MO. null stops repeating."},
        "recurrence_anchor": {"type": "string", "enum": ["due", "completion"], "description": "Count the next occurrence from the due date (default) or from completion."},
        "reminders_before_minutes": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 40320}, "description": "Reminders, minutes before the due time."},
        "user_id": {"type": "string", "description": "Optional; must be the signed-in user."}
    });
    v.as_object().cloned().unwrap_or_default()
}

fn with_task_id(mut props: serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    props.insert(
        "task_id".into(),
        json!({"type": "integer", "minimum": 1, "description": "The task's number (#3 is 3)."}),
    );
    props
}

impl Tools {
    pub fn new(app: App) -> Self {
        Self { app }
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// Every tool with a description and a JSON Schema of its arguments.
    pub fn definitions() -> Vec<ToolDef> {
        let id_only = || {
            schema(
                Value::Object(with_task_id(serde_json::Map::new())),
                &["task_id"],
            )
        };
        let mut update = with_task_id(task_fields());
        update.insert(
            "add_tags".into(),
            json!({"type": "array", "items": {"type": "string"}}),
        );
        update.insert(
            "remove_tags".into(),
            json!({"type": "array", "items": {"type": "string"}}),
        );
        vec![
            ToolDef {
                name: "add_task",
                description: "Create a task for the user. Only title is required; pass only what the user said.",
                input_schema: schema(Value::Object(task_fields()), &["title"]),
            },
            ToolDef {
                name: "list_tasks",
                description: "List the user's tasks, soonest due first. Filters are optional and combine.",
                input_schema: schema(
                    json!({
                        "status": {"type": "string", "enum": ["all", "pending", "completed"], "description": "Default pending."},
                        "priority": {"type": "string", "pattern": "^(low|medium|high|urgent)(,(low|medium|high|urgent))*$", "description": "One level, or several as a comma list (any may match): \"urgent,high\"."},
                        "tags": {"type": "array", "items": {"type": "string"}, "description": "All must match."},
                        "query": {"type": "string", "description": "Words that must all appear in title or description."},
                        "due_from": {"type": "string", "description": "Due on or after this day (YYYY-MM-DD, from its start) or RFC 3339 instant."},
                        "due_to": {"type": "string", "description": "Due on or before this day (YYYY-MM-DD, through its end) or RFC 3339 instant."},
                        "overdue": {"type": "boolean"},
                        "completed_from": {"type": "string", "format": "date", "description": "Completed on or after this day (implies status completed)."},
                        "completed_to": {"type": "string", "format": "date", "description": "Completed on or before this day (implies status completed)."},
                        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                        "user_id": {"type": "string"}
                    }),
                    &[],
                ),
            },
            ToolDef {
                name: "complete_task",
                description: "Mark a task done by its number. Completing a recurring task schedules its next occurrence.",
                input_schema: id_only(),
            },
            ToolDef {
                name: "reopen_task",
                description: "Mark a completed task as not done, by its number.",
                input_schema: id_only(),
            },
            ToolDef {
                name: "delete_task",
                description: "Delete a task by its number. This cannot be undone.",
                input_schema: id_only(),
            },
            ToolDef {
                name: "update_task",
                description: "Change a task by its number: pass only the fields to change.",
                input_schema: schema(Value::Object(update), &["task_id"]),
            },
            ToolDef {
                name: "set_reminder",
                description: "Add a reminder to a task: minutes before its due time, or at an exact moment.",
                input_schema: schema(
                    Value::Object(with_task_id(
                        json!({
                            "before_minutes": {"type": "integer", "minimum": 0, "maximum": 40320},
                            "at": {"type": "string", "format": "date-time"},
                            "user_id": {"type": "string"}
                        })
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    )),
                    &["task_id"],
                ),
            },
            ToolDef {
                name: "search_tasks",
                description: "Find tasks (any status) whose title or description contains all the words.",
                input_schema: schema(
                    json!({"query": {"type": "string"}, "user_id": {"type": "string"}}),
                    &["query"],
                ),
            },
        ]
    }

    /// Runs each call in order; a call that fails has `{"error": …}` as its result.
    pub async fn run_all(&self, user: &User, calls: Vec<(String, Value)>) -> Vec<ToolCall> {
        let mut done = Vec::with_capacity(calls.len());
        for (tool, args) in calls {
            let result = match self.call(user, &tool, &args).await {
                Ok(v) => v,
                Err(e) => json!({"error": e.to_string()}),
            };
            done.push(ToolCall { tool, args, result });
        }
        done
    }

    /// Runs `tool` for `user`, counted in `taskflow_tool_calls_total` by tool and outcome.
    pub async fn call(&self, user: &User, tool: &str, args: &Value) -> Result<Value, ToolError> {
        let result = self.call_uncounted(user, tool, args).await;
        // A name the model made up is counted as `unknown`: labels stay a closed set.
        let label = DEFINITIONS
            .iter()
            .map(|d| d.name)
            .find(|n| *n == tool)
            .unwrap_or("unknown");
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("taskflow_tool_calls_total", "tool" => label, "outcome" => outcome)
            .increment(1);
        result
    }

    async fn call_uncounted(
        &self,
        user: &User,
        tool: &str,
        args: &Value,
    ) -> Result<Value, ToolError> {
        if let Some(field) = taskflow_core::error::nul_field(args) {
            return Err(ToolError::Invalid(format!(
                "{field} must not contain the NUL character"
            )));
        }
        let args = args.as_object().cloned().unwrap_or_default();
        // The schemas say `additionalProperties: false`: an argument they do not declare is
        // an error, not silently ignored (`list_tasks {"tag": "x"}` would list everything).
        if let Some(def) = DEFINITIONS.iter().find(|d| d.name == tool) {
            let declared = def.input_schema["properties"].as_object();
            if let Some(declared) = declared
                && let Some(unknown) = args.keys().find(|k| !declared.contains_key(k.as_str()))
            {
                let mut known: Vec<&str> = declared.keys().map(String::as_str).collect();
                known.sort_unstable();
                return Err(ToolError::Invalid(format!(
                    "{tool} has no argument `{unknown}`; it takes {}",
                    known.join(", ")
                )));
            }
        }
        if let Some(id) = args.get("user_id").filter(|v| !v.is_null())
            && id.as_str() != Some(user.id.to_string().as_str())
        {
            return Err(ToolError::Invalid(
                "user_id must be the signed-in user".into(),
            ));
        }
        match tool {
            "add_task" => {
                let draft = draft(&args)?;
                let task = self.app.create_task(user, draft).await?;
                Ok(task.to_json())
            }
            "list_tasks" | "search_tasks" => {
                let query = query(&self.app, &args, user, tool == "search_tasks")?;
                let page = self.app.list_tasks(user, &query).await?;
                Ok(json!({"items": page.items, "next_cursor": page.next_cursor}))
            }
            "complete_task" => {
                let n = task_number(&args)?;
                self.find(user, n).await?;
                let task = self.app.complete_task(user, TaskRef::Number(n)).await?;
                let mut result = task.to_json();
                let now = self.app.clock().now();
                if taskflow_core::recur::series_ended(&task, user.timezone, now) {
                    result["series_ended"] = Value::Bool(true);
                }
                Ok(result)
            }
            "reopen_task" => Ok(self
                .by_number(user, &args, |r| self.app.reopen_task(user, r))
                .await?),
            "delete_task" => {
                let n = task_number(&args)?;
                let task = self.find(user, n).await?;
                self.app.delete_task(user, TaskRef::Number(n), None).await?;
                Ok(json!({"deleted": true, "task": task}))
            }
            "update_task" => {
                let n = task_number(&args)?;
                let current = self.find(user, n).await?;
                let patch = patch(&args, &current)?;
                let task = self
                    .app
                    .update_task(user, TaskRef::Number(n), patch, None)
                    .await?;
                Ok(task.to_json())
            }
            "set_reminder" => {
                let n = task_number(&args)?;
                let current = self.find(user, n).await?;
                let spec = match (
                    args.get("before_minutes").and_then(Value::as_i64),
                    args.get("at").and_then(Value::as_str),
                ) {
                    (Some(m), _) => ReminderSpec::before(m)?,
                    (None, Some(at)) => ReminderSpec::At(input::instant("at", at)?),
                    _ => return Err(ToolError::Invalid("give before_minutes or at".into())),
                };
                let mut specs: Vec<ReminderSpec> = current
                    .reminders
                    .iter()
                    .map(|r| match r.before_minutes {
                        Some(m) => ReminderSpec::Before { minutes: m },
                        None => ReminderSpec::At(r.fire_at),
                    })
                    .collect();
                specs.push(spec);
                let patch = TaskPatch {
                    reminders: Some(specs),
                    ..TaskPatch::default()
                };
                let task = self
                    .app
                    .update_task(user, TaskRef::Number(n), patch, None)
                    .await?;
                Ok(task.to_json())
            }
            other => Err(ToolError::UnknownTool(other.to_owned())),
        }
    }

    async fn find(&self, user: &User, n: i64) -> Result<Task, ToolError> {
        match self.app.task(user, TaskRef::Number(n)).await {
            Ok(t) => Ok(t),
            Err(AppError::NotFound) => Err(ToolError::NoSuchTask(n)),
            Err(e) => Err(e.into()),
        }
    }

    async fn by_number<F, Fut>(
        &self,
        user: &User,
        args: &serde_json::Map<String, Value>,
        f: F,
    ) -> Result<Value, ToolError>
    where
        F: FnOnce(TaskRef) -> Fut,
        Fut: std::future::Future<Output = Result<Task, AppError>>,
    {
        let n = task_number(args)?;
        self.find(user, n).await?;
        Ok(f(TaskRef::Number(n)).await?.to_json())
    }
}

pub(crate) fn task_number(args: &serde_json::Map<String, Value>) -> Result<i64, ToolError> {
    let v = args
        .get("task_id")
        .ok_or_else(|| ToolError::Invalid("task_id (the task's number) is required".into()))?;
    let n = v.as_i64().or_else(|| {
        v.as_str()
            .and_then(|s| s.trim().trim_start_matches('#').parse().ok())
    });
    n.filter(|n| *n >= 1).ok_or_else(|| {
        ToolError::Invalid(format!("task_id must be a task number such as 3, got {v}"))
    })
}

fn strings(args: &serde_json::Map<String, Value>, key: &str) -> Vec<String> {
    args.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A text argument: absent (`None`), `null` (`Some(None)`) or a string; anything else is an
/// error naming the argument.
fn text(
    args: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<Option<String>>, ToolError> {
    match args.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(other) => Err(ToolError::Invalid(format!(
            "{key} must be a string, got {other}"
        ))),
    }
}

/// A text argument where `null` means the same as leaving it out.
fn given(args: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, ToolError> {
    Ok(text(args, key)?.flatten())
}

/// `reminders_before_minutes`: absent, `null` (none) or a list of whole minutes.
fn reminder_inputs(
    args: &serde_json::Map<String, Value>,
) -> Result<Option<Option<Vec<ReminderInput>>>, ToolError> {
    const KEY: &str = "reminders_before_minutes";
    let list = match args.get(KEY) {
        None => return Ok(None),
        Some(Value::Null) => return Ok(Some(None)),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(ToolError::Invalid(format!(
                "{KEY} must be a list of whole minutes, got {other}"
            )));
        }
    };
    list.iter()
        .map(|m| {
            m.as_i64()
                .map(|m| ReminderInput {
                    before_minutes: Some(m),
                    at: None,
                })
                .ok_or_else(|| {
                    ToolError::Invalid(format!("{KEY} must be a list of whole minutes, got {m}"))
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|r| Some(Some(r)))
}

fn draft(args: &serde_json::Map<String, Value>) -> Result<TaskDraft, ToolError> {
    let tags = args.contains_key("tags").then(|| strings(args, "tags"));
    Ok(DraftInput {
        title: given(args, "title")?,
        description: given(args, "description")?,
        priority: given(args, "priority")?,
        tags,
        due_at: given(args, "due_at")?,
        due_date: given(args, "due_date")?,
        recurrence: given(args, "recurrence")?,
        recurrence_anchor: given(args, "recurrence_anchor")?,
        reminders: reminder_inputs(args)?.flatten(),
    }
    .parse()?)
}

fn patch(args: &serde_json::Map<String, Value>, current: &Task) -> Result<TaskPatch, ToolError> {
    let mut tags: Option<Vec<String>> = args.get("tags").map(|_| strings(args, "tags"));
    let (add, remove) = (strings(args, "add_tags"), strings(args, "remove_tags"));
    if !add.is_empty() || !remove.is_empty() {
        let mut t: Vec<String> =
            tags.unwrap_or_else(|| current.tags.iter().map(|t| t.as_str().to_owned()).collect());
        let remove: Vec<String> = remove
            .iter()
            .filter_map(|r| Tag::parse(r).ok())
            .map(|t| t.as_str().to_owned())
            .collect();
        t.retain(|x| !remove.contains(x));
        t.extend(add);
        tags = Some(t);
    }
    // Models often send `null` for what they leave alone: only the due and the recurrence
    // are cleared by `null`; a `null` title, description, priority, anchor or reminder list
    // changes nothing.
    let keep_on_null = |key: &str| Ok::<_, ToolError>(given(args, key)?.map(Some));
    Ok(PatchInput {
        title: keep_on_null("title")?,
        description: keep_on_null("description")?,
        priority: keep_on_null("priority")?,
        tags: tags.map(Some),
        due_at: text(args, "due_at")?,
        due_date: text(args, "due_date")?,
        recurrence: text(args, "recurrence")?,
        recurrence_anchor: keep_on_null("recurrence_anchor")?,
        reminders: reminder_inputs(args)?.filter(Option::is_some),
        status: None,
    }
    .parse()?)
}

/// The list tool's argument names for the fields of the app's list input.
const LIST_ARGS: [(&str, &str); 5] = [
    ("due_after", "due_from"),
    ("due_before", "due_to"),
    ("completed_after", "completed_from"),
    ("completed_before", "completed_to"),
    ("q", "query"),
];

fn query(
    app: &App,
    args: &serde_json::Map<String, Value>,
    user: &User,
    search: bool,
) -> Result<TaskQuery, ToolError> {
    let mut input = ListInput {
        status: given(args, "status")?,
        priorities: given(args, "priority")?.into_iter().collect(),
        tags: strings(args, "tags"),
        search: given(args, "query")?,
        due_after: given(args, "due_from")?,
        due_before: given(args, "due_to")?,
        completed_after: given(args, "completed_from")?,
        completed_before: given(args, "completed_to")?,
        ..ListInput::default()
    };
    if input.status.is_none() && !search {
        // A list shows what is still to do; a search looks everywhere.
        input.status = Some("pending".into());
    }
    if input.completed_after.is_some() || input.completed_before.is_some() {
        input.status = Some("completed".into());
    }
    match args.get("overdue") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(o)) => {
            input.overdue = Some(*o);
            if *o {
                input.status = Some("pending".into());
            }
        }
        Some(other) => {
            return Err(ToolError::Invalid(format!(
                "overdue must be true or false, got {other}"
            )));
        }
    }
    match args.get("limit") {
        None | Some(Value::Null) => {}
        Some(v) => {
            input.limit = Some(v.as_i64().ok_or_else(|| {
                ToolError::Invalid(format!(
                    "limit must be a whole number from 1 to {MAX_PAGE}, got {v}"
                ))
            })?)
        }
    }
    app.task_query(user.timezone, input).map_err(|e| match e {
        AppError::Validation(mut v) => {
            for f in &mut v.0 {
                if let Some((_, arg)) = LIST_ARGS.iter().find(|(field, _)| *field == f.field) {
                    f.field = (*arg).to_owned();
                }
            }
            ToolError::from(v)
        }
        other => other.into(),
    })
}

//! The task tools. Each is a thin layer over a use case: arguments in (JSON, the parameter
//! names MCP clients of this kind of app already use; `task_id` is the per-user number),
//! the task(s) as JSON out. The user always comes from the session; a `user_id` argument
//! must name that same user.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use taskflow_app::{App, AppError, TaskRef};
use taskflow_core::{
    Description, Due, Priority, Recurrence, RecurrenceAnchor, ReminderSpec, Tag, Tags, Task,
    TaskDraft, TaskPatch, TaskStatus, TaskTitle, User, ValidationErrors, task::local_instant,
};
use taskflow_store::TaskQuery;

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
                        "due_from": {"type": "string", "format": "date"},
                        "due_to": {"type": "string", "format": "date"},
                        "overdue": {"type": "boolean"},
                        "completed_from": {"type": "string", "format": "date", "description": "Completed on or after this day (implies status completed)."},
                        "completed_to": {"type": "string", "format": "date", "description": "Completed on or before this day (implies status completed)."},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 100},
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
                let query = query(&args, user, tool == "search_tasks", self.app.clock().now())?;
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
                    (None, Some(at)) => ReminderSpec::At(instant("at", at)?),
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

fn string<'a>(args: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str)
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

fn instant(field: &str, s: &str) -> Result<DateTime<Utc>, ToolError> {
    taskflow_core::time::parse_instant(s).ok_or_else(|| {
        ToolError::Invalid(format!(
            "{field} must be an RFC 3339 time with offset in the years 0001-9999, got `{s}`"
        ))
    })
}

fn date(field: &str, s: &str) -> Result<NaiveDate, ToolError> {
    taskflow_core::time::parse_date(s).ok_or_else(|| {
        ToolError::Invalid(format!(
            "{field} must be a date YYYY-MM-DD (years 0001-9999), got `{s}`"
        ))
    })
}

fn due(args: &serde_json::Map<String, Value>) -> Result<Option<Option<Due>>, ToolError> {
    match (args.get("due_at"), args.get("due_date")) {
        (Some(Value::String(_)), Some(Value::String(_))) => Err(ToolError::Invalid(
            "give due_at or due_date, not both".into(),
        )),
        (Some(Value::String(s)), _) => Ok(Some(Some(Due::At(instant("due_at", s)?)))),
        (_, Some(Value::String(s))) => Ok(Some(Some(Due::Date(date("due_date", s)?)))),
        (Some(Value::Null), _) | (_, Some(Value::Null)) => Ok(Some(None)),
        _ => Ok(None),
    }
}

fn reminder_specs(
    args: &serde_json::Map<String, Value>,
) -> Result<Option<Vec<ReminderSpec>>, ToolError> {
    let Some(list) = args
        .get("reminders_before_minutes")
        .and_then(Value::as_array)
    else {
        return Ok(None);
    };
    list.iter()
        .map(|m| ReminderSpec::before(m.as_i64().unwrap_or(-1)).map_err(ToolError::from))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn draft(args: &serde_json::Map<String, Value>) -> Result<TaskDraft, ToolError> {
    let title = TaskTitle::parse(string(args, "title").unwrap_or_default())?;
    Ok(TaskDraft {
        title: Some(title),
        description: Description::parse(string(args, "description").unwrap_or_default())?,
        priority: string(args, "priority")
            .map(Priority::parse)
            .transpose()?
            .unwrap_or_default(),
        tags: Tags::parse(&strings(args, "tags"))?,
        due: due(args)?.flatten(),
        recurrence: string(args, "recurrence")
            .map(Recurrence::parse)
            .transpose()?,
        recurrence_anchor: string(args, "recurrence_anchor")
            .map(RecurrenceAnchor::parse)
            .transpose()?
            .unwrap_or_default(),
        reminders: reminder_specs(args)?.unwrap_or_default(),
    })
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
    Ok(TaskPatch {
        title: string(args, "title").map(TaskTitle::parse).transpose()?,
        description: string(args, "description")
            .map(Description::parse)
            .transpose()?,
        priority: string(args, "priority").map(Priority::parse).transpose()?,
        tags: tags.map(|t| Tags::parse(&t)).transpose()?,
        due: due(args)?,
        recurrence: match args.get("recurrence") {
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(Recurrence::parse(s)?)),
            _ => None,
        },
        recurrence_anchor: string(args, "recurrence_anchor")
            .map(RecurrenceAnchor::parse)
            .transpose()?,
        reminders: reminder_specs(args)?,
        status: None,
    })
}

fn query(
    args: &serde_json::Map<String, Value>,
    user: &User,
    search: bool,
    now: DateTime<Utc>,
) -> Result<TaskQuery, ToolError> {
    let mut q = TaskQuery {
        limit: 50,
        ..TaskQuery::default()
    };
    q.status = match string(args, "status") {
        Some("all") => None,
        Some("completed") => Some(TaskStatus::Completed),
        Some("pending") => Some(TaskStatus::Pending),
        // A list shows what is still to do; a search looks everywhere.
        None if search => None,
        None => Some(TaskStatus::Pending),
        Some(other) => {
            return Err(ToolError::Invalid(format!(
                "status must be all, pending or completed, got `{other}`"
            )));
        }
    };
    if let Some(p) = string(args, "priority") {
        q.priorities = p
            .split(',')
            .map(|level| Priority::parse(level.trim()))
            .collect::<Result<_, _>>()?;
    }
    q.tags = strings(args, "tags")
        .iter()
        .map(|t| Tag::parse(t))
        .collect::<Result<_, _>>()?;
    if let Some(text) = string(args, "query") {
        q.words = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .take(10)
            .collect();
    }
    let tz = user.timezone;
    if let Some(from) = string(args, "due_from") {
        q.due_after = Some(local_instant(date("due_from", from)?, NaiveTime::MIN, tz));
    }
    if let Some(to) = string(args, "due_to") {
        let day = date("due_to", to)?;
        q.due_before = Some(Due::Date(day).overdue_after(tz) - TimeDelta::microseconds(1));
    }
    if let Some(from) = string(args, "completed_from") {
        q.completed_after = Some(local_instant(
            date("completed_from", from)?,
            NaiveTime::MIN,
            tz,
        ));
        q.status = Some(TaskStatus::Completed);
    }
    if let Some(to) = string(args, "completed_to") {
        let day = date("completed_to", to)?;
        q.completed_before = Some(Due::Date(day).overdue_after(tz) - TimeDelta::microseconds(1));
        q.status = Some(TaskStatus::Completed);
    }
    if args.get("overdue").and_then(Value::as_bool) == Some(true) {
        q.overdue = Some((now, true));
        q.status = Some(TaskStatus::Pending);
    }
    if let Some(limit) = args.get("limit").and_then(Value::as_u64) {
        q.limit = limit.clamp(1, 100) as u32;
    }
    Ok(q)
}

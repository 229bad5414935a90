//! The OpenAPI document, told the truth: what the handlers' types generate, plus what the
//! types cannot say: the errors every operation can answer (as problem+json), the limits,
//! formats and enums that validation enforces, and the routes outside the typed router
//! (compatibility routes, `/mcp`, `/healthz/*`, `/metrics`). Checked against the running
//! binary by schemathesis in `scripts/test`.

use serde_json::{Value, json};

use crate::PROBLEM_JSON;

/// A title: no control characters, and at least one that is neither blank nor invisible.
const TITLE: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u2800\\u3164\\uFE00-\\uFE0F\\uFEFF\\uFFA0\\uFFF9-\\uFFFB][^\\u0000-\\u001F\\u007F-\\u009F]*$";
/// Text that may hold anything but NUL.
const NO_NUL: &str = "^[^\\u0000]*$";
const TAG: &str = "^#?[\\w-]{1,50}$";
/// The `tag` query parameter: one tag or a comma list.
const TAG_LIST: &str = "^\\s*(#?[\\w-]{1,50})?\\s*(,\\s*(#?[\\w-]{1,50})?\\s*)*$";
const PRIORITY_LIST: &str =
    "^\\s*(low|medium|high|urgent)?\\s*(,\\s*(low|medium|high|urgent)?\\s*)*$";
/// The rules the schema vouches for; the API accepts any RFC 5545 RRULE without DTSTART
/// that occurs at least once and at most hourly.
const RRULE: &str = "^FREQ=(HOURLY|DAILY|WEEKLY|MONTHLY|YEARLY)(;INTERVAL=[1-9][0-9]?)?$";

/// The finished document.
pub fn document(doc: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or(Value::Null);
    refine_schemas(&mut doc);
    refine_parameters(&mut doc);
    add_untyped_routes(&mut doc);
    document_errors(&mut doc);
    doc
}

fn set(obj: &mut Value, pointer: &str, value: Value) {
    if let Some(v) = obj.pointer_mut(pointer) {
        *v = value;
    }
}

/// `schema`, or null (which clears a field or leaves it at its default).
fn nullable(mut schema: Value) -> Value {
    if let Some(t) = schema.get("type").cloned() {
        schema["type"] = json!([t, "null"]);
    }
    if let Some(e) = schema.get_mut("enum").and_then(Value::as_array_mut) {
        e.push(Value::Null);
    }
    schema
}

fn refine_schemas(doc: &mut Value) {
    let timezones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    let title = json!({"type": "string", "minLength": 1, "maxLength": 500, "pattern": TITLE});
    let description = json!({"type": "string", "maxLength": 10000, "pattern": NO_NUL});
    let priority = json!({"type": "string", "enum": ["low", "medium", "high", "urgent"]});
    let tags =
        json!({"type": "array", "maxItems": 20, "items": {"type": "string", "pattern": TAG}});
    let due_at = json!({"type": "string", "format": "date-time", "pattern": "^[0-9]{4}-"});
    let due_date = json!({"type": "string", "format": "date"});
    let recurrence = json!({"type": "string", "pattern": RRULE});
    let anchor = json!({"type": "string", "enum": ["due", "completion"]});
    let reminders = json!({"type": "array", "maxItems": 10, "items": {"$ref": "#/components/schemas/ReminderBody"}});
    // A reminder relative to the due time needs one.
    let relative_needs_due = json!({
        "if": {"required": ["reminders"], "properties": {"reminders": {"type": "array", "contains": {"required": ["before_minutes"]}}}},
        "then": {"anyOf": [
            {"required": ["due_at"], "properties": {"due_at": {"type": "string"}}},
            {"required": ["due_date"], "properties": {"due_date": {"type": "string"}}},
        ]},
    });
    let one_due = json!({"not": {"required": ["due_at", "due_date"]}});
    let s = "/components/schemas";
    set(
        doc,
        &format!("{s}/ReminderBody"),
        json!({
            "type": "object",
            "description": "`{before_minutes}` relative to the due time, or `{at}` an instant.",
            "oneOf": [
                {"required": ["before_minutes"], "properties": {"before_minutes": {"type": "integer", "minimum": 0, "maximum": 40320}}, "not": {"required": ["at"]}},
                {"required": ["at"], "properties": {"at": due_at.clone()}, "not": {"required": ["before_minutes"]}},
            ],
        }),
    );
    set(
        doc,
        &format!("{s}/CreateTask"),
        json!({
            "type": "object",
            "description": "`POST /api/tasks`. Unknown fields are ignored.",
            "required": ["title"],
            "properties": {
                "title": title, "description": nullable(description.clone()), "priority": nullable(priority.clone()),
                "tags": nullable(tags.clone()), "due_at": nullable(due_at.clone()), "due_date": nullable(due_date.clone()),
                "recurrence": nullable(recurrence.clone()), "recurrence_anchor": nullable(anchor.clone()),
                "reminders": nullable(reminders.clone()),
            },
            "allOf": [one_due, relative_needs_due],
        }),
    );
    set(
        doc,
        &format!("{s}/PatchTask"),
        json!({
            "type": "object",
            "description": "`PATCH /api/tasks/{id}`: absent fields stay, `null` clears. Unknown fields are ignored.",
            "properties": {
                "title": title, "description": nullable(description), "priority": nullable(priority),
                "tags": nullable(tags), "due_at": nullable(due_at), "due_date": nullable(due_date),
                "recurrence": nullable(recurrence), "recurrence_anchor": nullable(anchor),
                "reminders": nullable(reminders),
                "status": {"type": "string", "enum": ["pending", "completed"], "description": "The same as reopen or complete."},
            },
            "allOf": [{"not": {"required": ["due_at", "due_date"]}}],
        }),
    );
    // As the server reads an address: one @, a dotted domain, no blanks or control characters.
    let c = "[^\\s@\\u0000-\\u001F\\u007F-\\u009F";
    let email = json!({"type": "string", "maxLength": 254, "pattern": format!("^{c}]+@{c}.]{c}]*\\.{c}]*{c}.]$")});
    let name = json!({"type": "string", "maxLength": 100, "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"});
    let timezone = json!({"type": "string", "enum": timezones, "description": "An IANA timezone."});
    set(
        doc,
        &format!("{s}/SignupBody"),
        json!({
            "type": "object",
            "required": ["email", "password"],
            "properties": {
                "email": email, "password": {"type": "string", "minLength": 8, "maxLength": 1024, "pattern": NO_NUL},
                "name": nullable(name.clone()), "timezone": nullable(timezone.clone()),
            },
        }),
    );
    set(
        doc,
        &format!("{s}/LoginBody"),
        json!({
            "type": "object",
            "required": ["email", "password"],
            "properties": {"email": {"type": "string", "pattern": NO_NUL}, "password": {"type": "string", "pattern": NO_NUL}},
        }),
    );
    set(
        doc,
        &format!("{s}/ProfileBody"),
        json!({
            "type": "object",
            "properties": {"name": nullable(name), "timezone": nullable(timezone)},
        }),
    );
    if let Some(chat) = doc.pointer_mut(&format!("{s}/ChatRequest")) {
        chat["required"] = json!(["message"]);
        chat["additionalProperties"] = json!(false);
        set(
            chat,
            "/properties/message",
            json!({"type": "string", "pattern": NO_NUL, "description": "What the user says; up to 2,000 characters are read."}),
        );
        set(
            chat,
            "/properties/conversation_id",
            json!({"type": ["string", "null"], "format": "uuid"}),
        );
    }
}

/// Constraints of the query and path parameters, by name.
fn refine_parameters(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                continue;
            };
            for p in params {
                let name = p["name"].as_str().unwrap_or_default().to_owned();
                let schema = match name.as_str() {
                    "limit" if path == "/api/tasks" => {
                        json!({"type": "integer", "minimum": 1, "maximum": 200})
                    }
                    "limit" => json!({"type": "integer", "minimum": 1, "maximum": 500}),
                    "after" => json!({"type": "integer", "minimum": 0}),
                    "status" => {
                        json!({"type": "string", "enum": ["", "all", "pending", "completed"]})
                    }
                    "priority" => json!({"type": "string", "pattern": PRIORITY_LIST}),
                    "tag" => {
                        json!({"type": "array", "items": {"type": "string", "pattern": TAG_LIST}})
                    }
                    "q" => json!({"type": "string", "maxLength": 200, "pattern": NO_NUL}),
                    "due_before" | "due_after" => {
                        json!({"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time", "pattern": "^[0-9]{4}-"}]})
                    }
                    "overdue" => json!({"type": "string", "enum": ["true", "false", "1", "0"]}),
                    "unread" => json!({"type": "boolean"}),
                    "sort" => {
                        json!({"type": "string", "enum": ["due", "priority", "created", "title"]})
                    }
                    "order" => json!({"type": "string", "enum": ["asc", "desc"]}),
                    "cursor" => {
                        json!({"type": "string", "description": "`next_cursor` of the previous page, as the server gave it.", "pattern": "^([A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{22})?$"})
                    }
                    "last_event_id" => json!({"type": "integer", "minimum": 0}),
                    "id" => json!({"type": "string", "format": "uuid"}),
                    _ => continue,
                };
                p["schema"] = schema;
            }
        }
    }
}

fn problem_response(description: &str) -> Value {
    json!({"description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

/// The routes served outside the typed router.
fn add_untyped_routes(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let secured = json!([{"bearer": []}]);
    let user_id = json!({"name": "user_id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}, "description": "Must be the token's user (else 403)."});
    let number = json!({"name": "number", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}, "description": "The per-user task number (#3)."});
    let task = json!({"description": "The task", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskDoc"}}}});
    let forbidden = problem_response("The user_id is not the token's user");
    let compat = |summary: &str, params: Value, responses: Value, body: Option<&str>| {
        let mut op = json!({"tags": ["compatibility"], "summary": summary, "parameters": params, "responses": responses, "security": secured});
        if let Some(schema) = body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        }
        op
    };
    paths.insert("/api/{user_id}/tasks".into(), json!({
        "get": compat("List your tasks (as GET /api/tasks)", json!([user_id]), json!({"200": {"description": "A page of tasks", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskPage"}}}}, "403": forbidden}), None),
        "post": compat("Create a task (as POST /api/tasks)", json!([user_id]), json!({"201": task, "403": forbidden}), Some("CreateTask")),
    }));
    paths.insert("/api/{user_id}/tasks/{number}".into(), json!({
        "get": compat("A task by its number", json!([user_id, number]), json!({"200": task, "403": forbidden}), None),
        "patch": compat("Change a task by its number", json!([user_id, number]), json!({"200": task, "403": forbidden, "412": problem_response("The task changed since the If-Match version")}), Some("PatchTask")),
        "put": compat("Change a task by its number (as PATCH)", json!([user_id, number]), json!({"200": task, "403": forbidden, "412": problem_response("The task changed since the If-Match version")}), Some("PatchTask")),
        "delete": compat("Delete a task by its number", json!([user_id, number]), json!({"204": {"description": "Deleted"}, "403": forbidden, "412": problem_response("The task changed since the If-Match version")}), None),
    }));
    for (action, what) in [("complete", "Complete"), ("reopen", "Reopen")] {
        let op = compat(
            &format!("{what} a task by its number"),
            json!([user_id, number]),
            json!({"200": task, "403": forbidden}),
            None,
        );
        paths.insert(
            format!("/api/{{user_id}}/tasks/{{number}}/{action}"),
            json!({"post": op, "patch": op}),
        );
    }
    paths.insert("/api/{user_id}/chat".into(), json!({
        "post": compat("Talk to the assistant (as POST /api/chat)", json!([user_id]), json!({"200": {"description": "The reply", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatReplyDoc"}}}}, "403": forbidden}), Some("ChatRequest")),
    }));
    paths.insert("/mcp".into(), json!({
        "post": {"tags": ["mcp"], "summary": "MCP over streamable HTTP (JSON-RPC 2.0); see the MCP specification",
            "description": "Send `Accept: application/json, text/event-stream`. Errors of the transport are JSON-RPC error objects: 400 with -32700 (not JSON) or -32600 (not JSON-RPC), 404 for an unknown session, 429 when the user's sessions are at the cap.",
            "security": secured,
            "parameters": [{"name": "Mcp-Session-Id", "in": "header", "required": false, "schema": {"type": "string"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["jsonrpc"], "properties": {"jsonrpc": {"const": "2.0"}}}}}},
            "responses": {"200": {"description": "A JSON-RPC response, as JSON or an SSE stream", "content": {"application/json": {}, "text/event-stream": {}}}, "202": {"description": "A notification or response was accepted"}}},
        "delete": {"tags": ["mcp"], "summary": "Close an MCP session", "security": secured,
            "parameters": [{"name": "Mcp-Session-Id", "in": "header", "required": true, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "Closed"}, "204": {"description": "Closed"}}},
    }));
    paths.insert("/healthz/live".into(), json!({"get": {"tags": ["operations"], "summary": "The process is up", "responses": {"200": {"description": "`{status: \"ok\"}`", "content": {"application/json": {}}}}}}));
    paths.insert("/healthz/ready".into(), json!({"get": {"tags": ["operations"], "summary": "Ready to serve: the database answers and every role of this process runs", "responses": {"200": {"description": "Ready", "content": {"application/json": {}}}, "503": {"description": "Not ready; the body names what is not", "content": {"application/json": {}}}}}}));
    paths.insert("/metrics".into(), json!({"get": {"tags": ["operations"], "summary": "Prometheus metrics", "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {}}}}}}));
}

/// Every error is problem+json, and every operation documents the errors any request can
/// meet (400, 401 where signed in, 404, 413/415 with a body, 422, 429, 500, 503) besides
/// its own (409, 412 …). `/mcp` answers JSON-RPC errors and the probes their own JSON.
fn document_errors(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        if path == "/mcp" || path.starts_with("/healthz") || path == "/metrics" {
            continue;
        }
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let has_body = op.contains_key("requestBody");
            let mut codes = vec![
                ("400", "Malformed request"),
                ("404", "No such resource (another user's is the same)"),
                ("422", "Invalid input; `errors` names each field"),
                ("429", "Rate limited; see Retry-After"),
                ("500", "Something went wrong on our side"),
                (
                    "503",
                    "At capacity or the role is not running here; see Retry-After",
                ),
            ];
            if secured {
                codes.push(("401", "Sign in first: a missing, invalid or expired token"));
            }
            if has_body {
                codes.push(("413", "The body is larger than 64 KiB"));
                codes.push(("415", "The body is not sent as application/json"));
            }
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for (code, what) in codes {
                responses
                    .entry(code)
                    .or_insert_with(|| problem_response(what));
            }
            for (code, response) in responses.iter_mut() {
                if code.as_str() >= "400" {
                    let description = response["description"]
                        .as_str()
                        .unwrap_or("Error")
                        .to_owned();
                    *response = problem_response(&description);
                }
            }
        }
    }
}

//! The task list query: filters, sorting and keyset pagination, built once as SQL for both
//! adapters.

use chrono::{DateTime, Utc};
use taskflow_core::{Priority, Tag, Task, TaskStatus, UserId};

use crate::{
    cursor::{Cursor, CursorKey},
    micros,
};

/// What `sort=` orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortBy {
    #[default]
    Due,
    Priority,
    Created,
    Title,
}

/// `order=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// A validated task list request of one user.
#[derive(Debug, Clone)]
pub struct TaskQuery {
    pub status: Option<TaskStatus>,
    /// Any of these (empty: any priority).
    pub priorities: Vec<Priority>,
    /// All of these.
    pub tags: Vec<Tag>,
    /// Full-text words, all of which must match title or description.
    pub words: Vec<String>,
    /// Inclusive bounds; an all-day task counts as its whole day.
    pub due_after: Option<DateTime<Utc>>,
    pub due_before: Option<DateTime<Utc>>,
    /// Inclusive bounds on when a task was completed (only completed tasks match).
    pub completed_after: Option<DateTime<Utc>>,
    pub completed_before: Option<DateTime<Utc>>,
    /// `Some((now, true))`: only overdue tasks; `Some((now, false))`: none that are overdue.
    pub overdue: Option<(DateTime<Utc>, bool)>,
    pub sort: SortBy,
    pub order: Order,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

impl Default for TaskQuery {
    fn default() -> Self {
        Self {
            status: None,
            priorities: Vec::new(),
            tags: Vec::new(),
            words: Vec::new(),
            due_after: None,
            due_before: None,
            completed_after: None,
            completed_before: None,
            overdue: None,
            sort: SortBy::Due,
            order: Order::Asc,
            limit: 50,
            cursor: None,
        }
    }
}

/// One page of tasks.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Task>,
    pub next_cursor: Option<Cursor>,
}

/// A bound parameter of a built query.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    I64(i64),
    Text(String),
}

/// The per-sort flag (undated last), key and tie-breaker columns.
pub(crate) fn sort_columns(sort: SortBy) -> (Option<&'static str>, &'static str) {
    match sort {
        SortBy::Due => (
            Some("(CASE WHEN t.due_sort IS NULL THEN 1 ELSE 0 END)"),
            "COALESCE(t.due_sort, 0)",
        ),
        SortBy::Priority => (None, "t.priority_pos"),
        SortBy::Created => (None, "t.created_at"),
        SortBy::Title => (None, "t.title_key"),
    }
}

/// Where a priority sorts in ascending order: urgent first.
pub(crate) fn priority_pos(p: Priority) -> i64 {
    3 - p.rank()
}

/// Builds `SELECT <columns> FROM tasks t WHERE … ORDER BY … LIMIT …` with `?` placeholders.
/// `fts` renders the full-text condition for one bound query string.
pub(crate) fn build_list(
    columns: &str,
    user: UserId,
    q: &TaskQuery,
    fts: impl Fn() -> &'static str,
    fts_query: impl Fn(&[String]) -> String,
) -> (String, Vec<Param>) {
    let mut sql = format!("SELECT {columns} FROM tasks t WHERE t.user_id = ?");
    let mut params = vec![Param::Text(user.to_string())];
    if let Some(status) = q.status {
        sql.push_str(" AND t.status = ?");
        params.push(Param::Text(status.as_str().into()));
    }
    if !q.priorities.is_empty() {
        let marks = vec!["?"; q.priorities.len()].join(", ");
        sql.push_str(&format!(" AND t.priority IN ({marks})"));
        params.extend(q.priorities.iter().map(|p| Param::Text(p.as_str().into())));
    }
    for tag in &q.tags {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM task_tags g WHERE g.task_id = t.id AND g.tag = ?)",
        );
        params.push(Param::Text(tag.as_str().into()));
    }
    if !q.words.is_empty() {
        sql.push_str(" AND ");
        sql.push_str(fts());
        params.push(Param::Text(fts_query(&q.words)));
    }
    if let Some(after) = q.due_after {
        sql.push_str(" AND t.due_last >= ?");
        params.push(Param::I64(micros(after)));
    }
    if let Some(before) = q.due_before {
        sql.push_str(" AND t.due_sort <= ?");
        params.push(Param::I64(micros(before)));
    }
    if let Some(after) = q.completed_after {
        sql.push_str(" AND t.completed_at >= ?");
        params.push(Param::I64(micros(after)));
    }
    if let Some(before) = q.completed_before {
        sql.push_str(" AND t.completed_at <= ?");
        params.push(Param::I64(micros(before)));
    }
    match q.overdue {
        Some((now, true)) => {
            sql.push_str(" AND t.status = 'pending' AND t.due_last < ?");
            params.push(Param::I64(micros(now)));
        }
        Some((now, false)) => {
            sql.push_str(
                " AND NOT (t.status = 'pending' AND t.due_last IS NOT NULL AND t.due_last < ?)",
            );
            params.push(Param::I64(micros(now)));
        }
        None => {}
    }
    let (flag, key) = sort_columns(q.sort);
    let (cmp, dir) = match q.order {
        Order::Asc => (">", "ASC"),
        Order::Desc => ("<", "DESC"),
    };
    if let Some(c) = &q.cursor {
        let k = match &c.key {
            CursorKey::I64(v) => Param::I64(*v),
            CursorKey::Text(s) => Param::Text(s.clone()),
        };
        let after_key = format!("({key} {cmp} ? OR ({key} = ? AND t.number {cmp} ?))");
        match flag {
            Some(flag) => {
                sql.push_str(&format!(
                    " AND ({flag} > ? OR ({flag} = ? AND {after_key}))"
                ));
                params.extend([Param::I64(c.flag), Param::I64(c.flag)]);
            }
            None => sql.push_str(&format!(" AND {after_key}")),
        }
        params.extend([k.clone(), k, Param::I64(c.number)]);
    }
    let flag_order = flag.map(|f| format!("{f} ASC, ")).unwrap_or_default();
    sql.push_str(&format!(
        " ORDER BY {flag_order}{key} {dir}, t.number {dir} LIMIT ?"
    ));
    params.push(Param::I64(i64::from(q.limit) + 1));
    (sql, params)
}
